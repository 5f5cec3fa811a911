"""SNS authenticity: the host rule, the string to sign, signatures v1/v2, certificate fetching
(from a loopback server standing in for SNS), caching and timeouts."""

import datetime
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from seacucumber.events import sns
from seacucumber.events.parse import parse_event
from seacucumber.exceptions import InvalidNotification, NotAuthentic, SNSUnavailable
from tests.fixtures_events import CERT_URL, Signer, make_certificate, notification, ses_event

CERT_PATH = "/" + CERT_URL.rsplit("/", 1)[1]

GOOD_URLS = [
    CERT_URL,
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
]
BAD_URLS = [
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",  # http
    "https://sns.s3.amazonaws.com/cert.pem",  # an S3 bucket named "sns"
    "https://sns.s3-us-west-2.amazonaws.com/cert.pem",  # legacy S3 host form
    "https://mybucket.s3.amazonaws.com/SimpleNotificationService-x.pem",
    "https://s3.amazonaws.com/sns.us-east-1.amazonaws.com/x.pem",
    "https://evil.amazonaws.com/SimpleNotificationService-x.pem",
    "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
    "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",  # user info
    "https://evil.com@sns.us-east-1.amazonaws.com/x.pem",
    "https://evil.com#@sns.us-east-1.amazonaws.com/x.pem",
    "https://sns.us-east-1.amazonaws.com:8443/x.pem",  # port
    "https://sns.us-east-1.amazonaws.com:443/x.pem",
    "https://sns.us-east-1.amazonaws.com/x.pem?u=https://evil.com/x.pem",
    "https://sns.us-east-1.amazonaws.com/x.txt",
    "https://sns.us-east-1.amazonaws.com./x.pem",
    "https://sns.us-east-1.amazonaws.com\\@evil.com/x.pem",
    "https://sns-us-east-1.amazonaws.com/x.pem",
    "https://127.0.0.1/x.pem",
    # region-shaped, but no region SNS runs in: DNS fails (or resolves to whoever registers
    # the name), so nothing may be fetched from it
    "https://sns.zz-evil-1.amazonaws.com/SimpleNotificationService-x.pem",
    "https://sns.us-east-9.amazonaws.com/SimpleNotificationService-x.pem",
    "https://sns.us-east-1.amazonaws.com.cn/SimpleNotificationService-x.pem",  # wrong suffix
    "https://sns.cn-north-1.amazonaws.com/SimpleNotificationService-x.pem",
    "https://sns.us-iso-east-1.amazonaws.com/SimpleNotificationService-x.pem",  # not public
    "file:///etc/ssl/cert.pem",
    "",
    None,
    42,
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_sns_certificate_hosts_are_accepted(url):
    assert sns.check_cert_url(url) == url


def _botocore_sns_regions():
    """SNS regions as boto3 lists them, computed independently of the code under test."""
    import boto3

    session = boto3.session.Session(region_name="us-east-1")
    return [(region, suffix)
            for partition, suffix in (("aws", "amazonaws.com"), ("aws-us-gov", "amazonaws.com"),
                                      ("aws-cn", "amazonaws.com.cn"))
            for region in session.get_available_regions("sns", partition_name=partition)]


def test_every_sns_region_botocore_knows_is_accepted():
    regions = _botocore_sns_regions()
    assert ("us-east-1", "amazonaws.com") in regions
    assert ("cn-north-1", "amazonaws.com.cn") in regions
    for region, suffix in regions:
        url = f"https://sns.{region}.{suffix}/SimpleNotificationService-abc.pem"
        assert sns.check_cert_url(url) == url


def test_a_region_newer_than_botocore_is_accepted_only_as_an_allowed_topics_region(settings):
    future = "https://sns.xx-future-1.amazonaws.com/SimpleNotificationService-abc.pem"
    future_cn = "https://sns.cn-future-9.amazonaws.com.cn/SimpleNotificationService-abc.pem"
    settings.SEACUCUMBER_EVENT_TOPIC_ARNS = ["arn:aws:sns:us-east-1:123456789012:ses-events"]
    for url in (future, future_cn):
        with pytest.raises(NotAuthentic):
            sns.check_cert_url(url)
    settings.SEACUCUMBER_EVENT_TOPIC_ARNS = ["arn:aws:sns:xx-future-1:123456789012:ses-events",
                                             "arn:aws-cn:sns:cn-future-9:123456789012:ses-events",
                                             "arn:aws:s3:::zz-evil-1", "not an arn"]
    assert sns.check_cert_url(future) == future
    assert sns.check_cert_url(future_cn) == future_cn
    for url in ("https://sns.xx-future-1.amazonaws.com.cn/x.pem",  # not its partition's suffix
                "https://sns.cn-future-9.amazonaws.com/x.pem",
                "https://sns.zz-evil-1.amazonaws.com/x.pem"):
        with pytest.raises(NotAuthentic):
            sns.check_cert_url(url)


@pytest.mark.parametrize("url", BAD_URLS)
def test_other_certificate_urls_are_refused_without_fetching(url, fake_sns):
    with pytest.raises(InvalidNotification):
        sns.certificate(url)
    assert fake_sns.requests == []


def test_string_to_sign_follows_sns_order_and_skips_missing_subject():
    message = notification({"eventType": "Send"}, message_id="m-1")
    expected = (
        f"Message\n{message['Message']}\nMessageId\nm-1\nTimestamp\n{message['Timestamp']}\n"
        f"TopicArn\n{message['TopicArn']}\nType\nNotification\n"
    )
    assert sns.string_to_sign(message) == expected.encode()
    with_subject = {**message, "Subject": "Amazon SES Email Event Notification"}
    assert b"Subject\nAmazon SES Email Event Notification\nTimestamp" in sns.string_to_sign(
        with_subject)


@pytest.mark.parametrize("version", ["1", "2"])
def test_both_signature_versions_verify(signer, settings, version):
    settings.SEACUCUMBER_SNS_CERTIFICATES = {CERT_URL: signer.pem.decode()}
    sns.verify(signer.sign(notification({"eventType": "Send"}), version=version))


@pytest.mark.parametrize("change", [
    {"Message": '{"eventType": "Bounce"}'},
    {"TopicArn": "arn:aws:sns:us-east-1:123456789012:other"},
    {"Subject": "added after signing"},
    {"SignatureVersion": "3"},
    {"SignatureVersion": 2},
    {"Signature": "not base64!"},
    {"Signature": ""},
    {"SigningCertURL": "https://bucket.s3.amazonaws.com/SimpleNotificationService-test.pem"},
])
def test_tampered_messages_fail_verification(signer, settings, change):
    settings.SEACUCUMBER_SNS_CERTIFICATES = {CERT_URL: signer.pem.decode()}
    message = signer.sign(notification({"eventType": "Send"}))
    with pytest.raises(NotAuthentic):
        sns.verify({**message, **change})


def test_version_1_signature_does_not_pass_as_version_2(signer, settings):
    settings.SEACUCUMBER_SNS_CERTIFICATES = {CERT_URL: signer.pem.decode()}
    message = signer.sign(notification({"eventType": "Send"}), version="1")
    with pytest.raises(NotAuthentic, match="does not match"):
        sns.verify({**message, "SignatureVersion": "2"})


def test_another_keys_signature_is_refused(signer, settings):
    settings.SEACUCUMBER_SNS_CERTIFICATES = {CERT_URL: signer.pem.decode()}
    with pytest.raises(NotAuthentic, match="does not match"):
        sns.verify(Signer().sign(notification({"eventType": "Send"})))


def test_expired_certificate_is_refused(settings):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    expired = Signer(key=key, pem=make_certificate(key, days=-1))
    settings.SEACUCUMBER_SNS_CERTIFICATES = {CERT_URL: expired.pem.decode()}
    with pytest.raises(NotAuthentic, match="expired"):
        sns.verify(expired.sign(notification({"eventType": "Send"})))


def test_certificate_is_fetched_once_then_cached(signer, fake_sns):
    fake_sns.files[CERT_PATH] = signer.pem
    for _ in range(3):
        sns.verify(signer.sign(notification({"eventType": "Send"})))
    assert fake_sns.requests == [CERT_PATH]


def test_missing_or_bad_certificate_is_refused(fake_sns):
    with pytest.raises(InvalidNotification, match="HTTP 404"):
        sns.certificate(CERT_URL)
    fake_sns.files[CERT_PATH] = b"-----BEGIN nonsense"
    with pytest.raises(NotAuthentic, match="not a PEM"):
        sns.certificate(CERT_URL)
    fake_sns.files[CERT_PATH] = b"x" * (sns.MAX_CERT_BYTES + 1)
    with pytest.raises(InvalidNotification, match="more than"):
        sns.certificate(CERT_URL)


@pytest.mark.parametrize("code", [500, 502, 503, 504, 429, 0])
def test_sns_host_failing_is_unavailable_so_sns_retries(signer, fake_sns, code):
    """5xx, 429 and a broken answer are SNS's trouble, not the message's: SNSUnavailable (the
    webhook answers 503 and SNS retries), never InvalidMessage (a 4xx SNS does not retry)."""
    fake_sns.files[CERT_PATH] = signer.pem
    fake_sns.codes[CERT_PATH] = code
    with pytest.raises(SNSUnavailable):
        sns.certificate(CERT_URL)
    del fake_sns.codes[CERT_PATH]  # the host recovers: nothing bad was cached
    fetched = sns.certificate(CERT_URL).public_key().public_numbers()
    assert fetched == signer.key.public_key().public_numbers()
    assert fake_sns.requests == [CERT_PATH, CERT_PATH]


@pytest.mark.parametrize("code", [400, 403, 404, 410])
def test_sns_host_refusing_the_url_is_invalid(fake_sns, code):
    fake_sns.codes[CERT_PATH] = code
    with pytest.raises(InvalidNotification, match=f"HTTP {code}"):
        sns.certificate(CERT_URL)


def test_sns_host_unreachable_is_unavailable(settings):
    from seacucumber.testing.processes import free_port

    sns.clear_cache()
    settings.SEACUCUMBER_SNS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SNSUnavailable):
        sns.certificate(CERT_URL)


def test_certificate_fetch_times_out(signer, fake_sns, settings):
    settings.SEACUCUMBER_SNS_CERT_TIMEOUT = 0.3
    fake_sns.files[CERT_PATH] = signer.pem
    fake_sns.delay = 2.0
    started = datetime.datetime.now()
    with pytest.raises(SNSUnavailable):
        sns.certificate(CERT_URL)
    assert (datetime.datetime.now() - started).total_seconds() < 1.9


def test_pinned_certificate_url_must_still_be_an_sns_host(signer, settings):
    url = "https://bucket.s3.amazonaws.com/SimpleNotificationService-test.pem"
    settings.SEACUCUMBER_SNS_CERTIFICATES = {url: signer.pem.decode()}
    with pytest.raises(NotAuthentic):
        sns.verify(signer.sign(notification({"eventType": "Send"}), cert_url=url))


@pytest.mark.parametrize("style", ["eventType", "notificationType"])
def test_both_event_styles_parse(style):
    event = parse_event(json.dumps(ses_event("Bounce", "ses-1", style, bounceType="Permanent")))
    assert (event.kind, event.ses_message_id, event.detail) == (
        "bounce", "ses-1", {"bounceType": "Permanent"})


def test_rendering_failure_and_unknown_types_parse():
    failure = parse_event(
        json.dumps(ses_event("Rendering Failure", "x", errorMessage="no template")))
    assert (failure.kind, failure.detail) == ("rendering_failure", {"errorMessage": "no template"})
    unknown = parse_event('{"eventType": "Teleport", "mail": {"messageId": "y"}}')
    assert unknown.kind is None and unknown.ses_message_id == "y"



def test_pinned_certificate_may_be_a_file_read_when_used(signer, settings, tmp_path):
    pem_file = tmp_path / "emulator-cert.pem"
    settings.SEACUCUMBER_SNS_CERTIFICATES = {CERT_URL: pem_file}
    message = signer.sign(notification({"eventType": "Send"}))
    with pytest.raises(NotAuthentic, match="pinned certificate file"):
        sns.verify(message)  # not written yet
    pem_file.write_bytes(signer.pem)
    sns.verify(message)


# --- freshness and seen ids (replays) ------------------------------------------------------------

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)


def stamped(when: datetime.datetime) -> dict:
    return {**notification(ses_event("Delivery", "ses-1")),
            "Timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}


def test_check_fresh_takes_an_hour_old_and_five_minutes_ahead(settings):
    ok = [NOW, NOW - datetime.timedelta(seconds=3600), NOW + datetime.timedelta(seconds=300)]
    for when in ok:
        sns.check_fresh(stamped(when), now=NOW)
    with pytest.raises(InvalidNotification, match="3601 s old, over SEACUCUMBER_SNS_MAX_AGE"):
        sns.check_fresh(stamped(NOW - datetime.timedelta(seconds=3601)), now=NOW)
    with pytest.raises(InvalidNotification, match="301 s ahead.*SEACUCUMBER_SNS_CLOCK_SKEW"):
        sns.check_fresh(stamped(NOW + datetime.timedelta(seconds=301)), now=NOW)
    settings.SEACUCUMBER_SNS_MAX_AGE = 60
    settings.SEACUCUMBER_SNS_CLOCK_SKEW = 0
    with pytest.raises(InvalidNotification):
        sns.check_fresh(stamped(NOW - datetime.timedelta(seconds=61)), now=NOW)
    with pytest.raises(InvalidNotification):
        sns.check_fresh(stamped(NOW + datetime.timedelta(seconds=1)), now=NOW)


def test_no_age_limit_still_refuses_the_future(settings):
    settings.SEACUCUMBER_SNS_MAX_AGE = None
    sns.check_fresh(stamped(NOW - datetime.timedelta(days=2000)), now=NOW)
    assert sns.replay_window() is None
    with pytest.raises(InvalidNotification, match="ahead"):
        sns.check_fresh(stamped(NOW + datetime.timedelta(hours=1)), now=NOW)


@pytest.mark.parametrize("stamp", [None, 7, "", "now", "2026-06-01T12:00:00", "x" * 10_000])
def test_a_timestamp_that_is_not_a_zoned_time_is_refused(stamp):
    with pytest.raises(InvalidNotification, match="not an ISO 8601 time") as caught:
        sns.check_fresh({"Timestamp": stamp}, now=NOW)
    assert len(str(caught.value)) < 120  # a long value is not copied whole into the log


@pytest.mark.django_db
def test_seen_ids_are_kept_through_the_replay_window_whatever_the_days(settings):
    from django.utils import timezone

    from seacucumber.models import SeenNotification

    def seen(name: str, seconds_ago: float) -> None:
        row = SeenNotification.objects.create(sns_message_id=name, topic_arn="t")
        SeenNotification.objects.filter(pk=row.pk).update(
            received_at=timezone.now() - datetime.timedelta(seconds=seconds_ago))

    seen("inside", 3600 + 300 - 60)  # a replay of it could still be fresh
    seen("outside", 3600 + 300 + 60)
    assert sns.replay_window() == 3900
    assert sns.forget_seen(0) == 1
    assert list(SeenNotification.objects.values_list("sns_message_id", flat=True)) == ["inside"]
    seen("old", 40 * 86400)
    assert sns.forget_seen(30) == 1  # a longer retention than the window is kept as asked
    assert SeenNotification.objects.count() == 1
    settings.SEACUCUMBER_SNS_MAX_AGE = None  # no age limit: the days alone
    assert sns.forget_seen(0) == 1


def test_the_emulator_and_the_test_helpers_stamp_messages_now(signer):
    from seacucumber.testing.emulator.events import sns_notification
    from tests.fixtures_events import confirmation

    for message in (sns_notification(ses_event("Delivery", "ses-1"), "arn:t"),
                    notification(ses_event("Delivery", "ses-1")), confirmation()):
        sns.check_fresh(message)
        sns.check_fresh(signer.sign(message))  # signing keeps the Timestamp
