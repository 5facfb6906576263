"""Everything that moves data in and out of PostGIS: settings, engine, models, migrations,
loaders, the project-managed cluster, and the read queries the dashboard needs."""
