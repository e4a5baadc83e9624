#!/bin/bash
# Lambda handler under the Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap): start the
# ASGI app; the adapter forwards each invocation to it and streams the response back.
# boto3 comes from the runtime ($LAMBDA_RUNTIME_DIR); the bundle holds only fastapi and uvicorn.
PATH="$PATH:$LAMBDA_TASK_ROOT/bin" \
PYTHONPATH="$LAMBDA_TASK_ROOT:$PYTHONPATH:/opt/python:$LAMBDA_RUNTIME_DIR" \
exec python -m uvicorn --factory llm_stream.app:create_app \
    --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" --no-access-log --timeout-graceful-shutdown 2
