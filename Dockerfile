# The income ledger's image: the wheel built from this checkout, installed into
# python:3.11-slim, run as an unprivileged user. The same image runs every process:
#   serve (the default), project, db init, db backup, and the other CLI commands.
# Build: docker build -t income-ledger:0.1.0 .    See docs/operations.md (Containers).

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LEDGER_LOG_FORMAT=json \
    LEDGER_DATABASE_URL=sqlite:////var/lib/income-ledger/ledger.db
# A fixed uid, so that files mounted into the container (keys, the SQLite volume) can be
# given to it on the host: chown 10001.
RUN groupadd --system --gid 10001 income-ledger \
    && useradd --system --uid 10001 --gid income-ledger \
       --home-dir /var/lib/income-ledger --create-home income-ledger
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/*.whl && rm -rf /tmp/dist
USER 10001:10001
WORKDIR /var/lib/income-ledger
VOLUME ["/var/lib/income-ledger"]
EXPOSE 8000
# The slim image has no curl: Python asks /health, which answers 503 (an error here) when
# the database cannot be reached.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["income-ledger"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
