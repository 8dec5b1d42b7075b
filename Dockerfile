FROM python:3.11-slim
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stepmark stepmark
COPY annotation annotation
COPY prm prm
COPY workers workers
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"
COPY . .
EXPOSE 8000
CMD ["gunicorn", "stepmark.wsgi:application", "--bind", "0.0.0.0:8000"]
