# Intake: one image for every role; the command picks it (web, worker, beat, migrate, status...).
#   docker build -t intake .
#   docker run --env-file .env intake check-config
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/intake
WORKDIR /src
COPY pyproject.toml ./
COPY service ./service
COPY workers ./workers
# The wheel carries the Python packages; the stylesheet beside them is copied in by hand
# (package data lists only the TOML and migration files).
RUN /opt/intake/bin/pip install . \
 && site="$(cd / && /opt/intake/bin/python -c 'import pathlib, service; print(pathlib.Path(service.__file__).parent)')" \
 && mkdir -p "$site/static" \
 && cp -r service/static/. "$site/static/"

FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/intake/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INTAKE_TEMPLATES_DIR=/app/templates \
    INTAKE_VAR_DIR=/var/lib/intake \
    INTAKE_DATABASE_URL=sqlite:////var/lib/intake/intake.db
RUN groupadd --system --gid 10001 intake \
 && useradd --system --uid 10001 --gid intake --home-dir /var/lib/intake --no-create-home \
      --shell /usr/sbin/nologin intake \
 && install -d -o intake -g intake -m 0750 /var/lib/intake
COPY --from=build /opt/intake /opt/intake
COPY templates /app/templates
WORKDIR /var/lib/intake
USER intake:intake
EXPOSE 8000 9808
# Exec form: intake is the process that receives SIGTERM (compose adds a tiny init with init: true).
ENTRYPOINT ["intake"]
CMD ["web", "--host", "0.0.0.0", "--port", "8000"]
