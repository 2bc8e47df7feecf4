FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ranker ranker
COPY persistence persistence
COPY sql sql
RUN pip install . && useradd --system ranker
USER ranker
EXPOSE 8000
ENTRYPOINT ["ranker"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
