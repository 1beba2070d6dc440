"""Database layer: models, engine, migrations, queries, import/export, demo data."""
