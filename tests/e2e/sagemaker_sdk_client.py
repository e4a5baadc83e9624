"""The `sagemaker` SDK v2 against the emulator, as a JumpStart user reads an endpoint: run by .venv-sagemaker.

Usage: python sagemaker_sdk_client.py EMULATOR_URL ENDPOINT_NAME   (prints one JSON line with what it saw)
"""

import json
import sys

import boto3
from sagemaker.deserializers import JSONDeserializer
from sagemaker.iterators import LineIterator
from sagemaker.predictor import Predictor
from sagemaker.serializers import JSONSerializer
from sagemaker.session import Session

url, endpoint = sys.argv[1:3]
boto_session = boto3.Session(region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
session = Session(boto_session=boto_session,
                  sagemaker_runtime_client=boto_session.client("sagemaker-runtime", endpoint_url=url))
predictor = Predictor(endpoint, sagemaker_session=session, serializer=JSONSerializer(),
                      deserializer=JSONDeserializer())
whole = predictor.predict({"inputs": "Hello", "parameters": {"max_new_tokens": 5}})
chat = predictor.predict({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
lines = predictor.predict_stream({"inputs": "Hello", "parameters": {"max_new_tokens": 5}, "stream": True},
                                 iterator=LineIterator)
print(json.dumps({"whole": whole, "chat": chat, "lines": [line.decode() for line in lines if line]}))
