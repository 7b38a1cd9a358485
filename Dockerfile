# revsync as a container job: `docker run revsync` runs one sync (exit 0/1/2/3).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    REVSYNC_CONFIG=/etc/revsync/revsync.yaml \
    REVSYNC_SECRETS_DIR=/run/secrets \
    REVSYNC_REQUIRE_DATABASE_URL=true

WORKDIR /app
COPY pyproject.toml README.md deploy/constraints.txt ./
COPY src ./src
RUN pip install -c constraints.txt . && useradd --system --uid 10001 --home-dir /var/lib/revsync --create-home revsync

USER revsync
WORKDIR /var/lib/revsync
VOLUME ["/etc/revsync"]
ENTRYPOINT ["revsync"]
CMD ["sync"]
