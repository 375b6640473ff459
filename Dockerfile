FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY batchgate batchgate
COPY api api
COPY workers workers
COPY schedulers schedulers
COPY config config
RUN pip install --no-cache-dir . && useradd --system --uid 10001 batchgate
USER batchgate
EXPOSE 4000
ENTRYPOINT ["batchgate"]
CMD ["up", "--config", "/etc/batchgate/config.yaml", "--host", "0.0.0.0", "--port", "4000"]
