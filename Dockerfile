# One image for the gateway and the workers (docker-compose.yml picks the command).
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# PyPI's Linux torch wheels are CUDA builds: the same image runs on GPU and CPU workers.
RUN pip install "torch==2.14.1" "torchvision==0.29.1"
COPY pyproject.toml README.md ./
COPY robustness robustness
COPY store store
COPY workers workers
COPY service service
RUN pip install ".[service,worker]"
RUN useradd --create-home robustness && mkdir -p /var/lib/robustness \
    && chown robustness /var/lib/robustness
USER robustness
EXPOSE 8000
CMD ["robustness", "serve", "--no-worker", "--host", "0.0.0.0", "--port", "8000"]
