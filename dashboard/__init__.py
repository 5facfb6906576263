"""The command-centre web app (Dash). Build it with :func:`dashboard.app.create_app`."""
