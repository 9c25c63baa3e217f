"""The ops console: connections' health, dead letters, record lookup and metrics in a browser
(`zxsync console`), server-rendered with Starlette and Jinja2 (no front-end build)."""
