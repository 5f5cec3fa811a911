# One image for every service of docker-compose.yml: the package, its emulator, the example.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.rst celeryconfig.py ./
COPY seacucumber ./seacucumber
RUN pip install --no-cache-dir -e . "flower>=2"
COPY example ./example
ENV PYTHONUNBUFFERED=1 PYTHONPATH=/app
