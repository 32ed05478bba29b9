"""Seeds moto for the AWS integration tests through boto3, an independent AWS client (it also
cross-checks epitaph's hand-written protocols: what boto3 writes, epitaph must read back).

Reads a JSON spec from the file named by the first argument (or stdin):

    {"endpoint": "http://127.0.0.1:PORT", "region": "us-east-1",
     "calls": [{"service": "logs", "op": "create_log_group",
                "args": {"logGroupName": "/app"},
                "region": "eu-west-1",                      (optional, else the spec's)
                "ignore": ["ResourceAlreadyExistsException"]}]}  (optional error codes)

makes the calls in order (boto3's snake_case operation names, the API's argument names) and
prints their answers as a JSON list (null for an ignored error; times as text). Any other
error ends the script with a non-zero status and boto3's message.
"""

import json
import sys

import boto3
from botocore.exceptions import ClientError

# Fixed test credentials: moto accepts any.
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def main():
    source = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    spec = json.load(source)
    clients = {}
    answers = []
    for call in spec["calls"]:
        region = call.get("region", spec["region"])
        key = (call["service"], region)
        if key not in clients:
            clients[key] = boto3.client(
                call["service"],
                endpoint_url=spec["endpoint"],
                region_name=region,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
            )
        try:
            answer = getattr(clients[key], call["op"])(**call.get("args", {}))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in call.get("ignore", []):
                answers.append(None)
                continue
            sys.exit(f"{call['service']}.{call['op']}: {e}")
        answer.pop("ResponseMetadata", None)
        answers.append(answer)
    json.dump(answers, sys.stdout, default=str)


if __name__ == "__main__":
    main()
