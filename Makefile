# Grid governance command centre. `make` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
APT_PACKAGES := postgresql-15 postgresql-15-postgis-3 postgresql-15-pgrouting gdal-bin chromium fonts-noto-cjk poppler-utils
VENV_STAMP := .venv/.installed
# with DATABASE_URL set we use that PostGIS and start none
DB_START := $(if $(DATABASE_URL),@echo "using DATABASE_URL",$(PY) -m etl db start)

.PHONY: help deps run serve test lint db-start db-stop migrate demo bench bench-etl bench-screen bench-planner bench-intake clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

deps: $(VENV_STAMP) ## install Debian packages (if missing) and the Python virtualenv
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$([ $$(id -u) -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV_STAMP): requirements.txt
	@test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

db-start: deps ## start the project-managed PostGIS (skipped when DATABASE_URL is set)
	$(DB_START)

db-stop: ## stop the project-managed PostGIS
	$(PY) -m etl db stop

migrate: db-start ## apply database migrations
	$(PY) -m etl migrate

demo: migrate ## build and load the demo county (skipped when already loaded)
	$(PY) -m etl demo --if-needed

run: demo ## install, start PostGIS, load the demo county and serve http://127.0.0.1:8050
	$(PY) -m etl users ensure-admin
	$(PY) -m dashboard

serve: ## serve the dashboard only (no set-up)
	$(PY) -m dashboard

test: db-start ## the whole suite against the real PostGIS and headless Chromium
	$(PY) -m pytest -q -p no:cacheprovider

lint: deps ## ruff (lint + format check) and mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: bench-etl bench-planner bench-screen bench-intake ## every benchmark

bench-etl: migrate ## ETL: 1M events vs ogr2ogr; assignment vs geopandas.sjoin
	$(PY) bench/bench_etl.py

bench-planner: demo ## planner vs PySAL spopt MaxPHeuristic (lattices and the demo county)
	$(PY) bench/bench_planner.py

bench-screen: demo ## command centre at province scale in headless Chromium
	$(PY) bench/bench_screen.py

bench-intake: demo ## sustained event intake through the API
	$(PY) bench/bench_intake.py

clean: ## remove generated files (keeps the database)
	rm -rf artifacts .pytest_cache .ruff_cache .mypy_cache
