#!/bin/bash
# Lambda handler under the Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap): start the
# function's server (llm_stream/serve.py: uvicorn with its limits); the adapter forwards each
# invocation to it and streams the response back.
# botocore comes from the runtime ($LAMBDA_RUNTIME_DIR); the bundle holds only starlette, pydantic and uvicorn.
PATH="$PATH:$LAMBDA_TASK_ROOT/bin" \
PYTHONPATH="$LAMBDA_TASK_ROOT:$PYTHONPATH:/opt/python:$LAMBDA_RUNTIME_DIR" \
exec python -m llm_stream.serve --port "${AWS_LWA_PORT:-8080}"
