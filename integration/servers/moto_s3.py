#!/usr/bin/env python3
"""Real S3 server for the integration tier: moto's server, with SigV4 authentication on.

Starts moto on 127.0.0.1 (port from argv[1], 0 = any free port), creates, while
authentication is still off, an IAM user allowed s3:* with an access key and the bucket
named in argv[2]; then, when argv[3] is "auth", turns authentication on, so that a wrong
secret is refused with SignatureDoesNotMatch and an unknown key with InvalidAccessKeyId,
as on AWS. Prints one JSON line (endpoint, keys, bucket) and serves until its standard
input closes, so it never outlives the test harness that started it.

moto's signature check (5.2) rebuilds the canonical query from the decoded URL, so it
refuses correctly signed requests whose query holds an encoded character (boto3's own
`list_objects_v2(Prefix="p/")` fails the same way). Tests that need such requests
(listing under a prefix, multipart upload ids) run with authentication off.
"""
import json
import sys


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    bucket = sys.argv[2] if len(sys.argv) > 2 else "bloodraven-integration"
    enforce_auth = len(sys.argv) > 3 and sys.argv[3] == "auth"
    try:
        import boto3
        from moto import settings
        from moto.server import ThreadedMotoServer
    except ImportError as err:
        print(f"moto is not installed ({err}): pip install 'moto[server]'", file=sys.stderr)
        return 3

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    setup = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="bloodraven")
    iam.put_user_policy(
        UserName="bloodraven",
        PolicyName="s3-all",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName="bloodraven")["AccessKey"]
    boto3.client("s3", **setup).create_bucket(Bucket=bucket)
    if enforce_auth:
        # From here on every request must be signed by a known key with the right secret.
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0

    print(
        json.dumps(
            {
                "endpoint": endpoint,
                "access_key_id": key["AccessKeyId"],
                "secret_access_key": key["SecretAccessKey"],
                "bucket": bucket,
            }
        ),
        flush=True,
    )
    sys.stdin.read()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
