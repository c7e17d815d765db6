"""AWS pieces: profiles from ~/.aws/config, STS calls, MFA codes, the session cache.

Only :mod:`broker.aws.sts` imports boto3/botocore, and only when a call is made.
"""
