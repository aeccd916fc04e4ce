# The labserver image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
# the CPU build of torch: the server never needs CUDA
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY client ./client
COPY server ./server
COPY trainers ./trainers
COPY migrations ./migrations
RUN pip install --no-cache-dir .
ENV LAB_SERVER_HOME=/var/lib/labserver
EXPOSE 5000
CMD ["labserver", "serve", "--host", "0.0.0.0", "--port", "5000"]
