"""Process wiring: settings, the web app, the arq worker, migrations, the CLI."""
