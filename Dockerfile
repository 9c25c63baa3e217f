# One image for worker, flower and the sandbox: the project installed from its own pyproject.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY workers workers
COPY tasks tasks
COPY schemas schemas
COPY clients clients
COPY sandbox sandbox
COPY zxsync zxsync
COPY console console
RUN pip install --no-cache-dir .
USER nobody
ENV ZXS_DATA_DIR=/tmp/zxsync
CMD ["zxsync", "worker"]
