FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# The product only: everything `ranker` imports (tests/unit/test_docker.py checks it). The load
# generator and the benchmark harness are tools of the checkout; .dockerignore keeps the rest out.
COPY pyproject.toml README.md ./
COPY ranker ranker
COPY persistence persistence
COPY sql sql
# With the tracing extra: RANKER_OTLP_ENDPOINT turns traces on without another image.
RUN pip install '.[otel]' && useradd --system ranker
USER ranker
EXPOSE 8000
# For the default command (serve); compose sets the worker's own (its heartbeat file).
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["ranker", "healthcheck", "--url", "http://127.0.0.1:8000/healthz"]
ENTRYPOINT ["ranker"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
