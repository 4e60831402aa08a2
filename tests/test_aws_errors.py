"""mappings/aws_errors.py: the one classification of AWS failures, for the IAM sync and STS."""

from __future__ import annotations

from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ParamValidationError
from hypothesis import given
from hypothesis import strategies as st

from mappings.aws_errors import TRANSIENT_CODES, AwsPermanentError, AwsTransientError, classify

codes = st.one_of(st.sampled_from(sorted(TRANSIENT_CODES)), st.text(min_size=1, max_size=40))
statuses = st.one_of(st.sampled_from([400, 403, 404, 408, 409, 429, 500, 502, 503, 504]), st.integers(100, 599))


@given(code=codes, status=statuses)
def test_a_client_error_is_transient_exactly_when_aws_means_later(code, status):
    error = ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")
    classified = classify(error)
    expected = AwsTransientError if (code in TRANSIENT_CODES or status >= 500 or status == 429) else AwsPermanentError
    assert type(classified) is expected
    assert classified.code == code


def test_connection_failures_are_transient_and_local_mistakes_permanent():
    assert isinstance(classify(EndpointConnectionError(endpoint_url="http://x")), AwsTransientError)
    assert isinstance(classify(NoCredentialsError()), AwsPermanentError)
    assert isinstance(classify(ParamValidationError(report="bad")), AwsPermanentError)
