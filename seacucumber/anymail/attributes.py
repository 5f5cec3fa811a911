"""django-anymail's message attributes, read by name (anymail is no dependency of ours).

An ``AnymailMessage``, or any ``EmailMessage`` with anymail's attributes set, sends through
``SESBackend`` as anymail's Amazon SES backend maps them (docs/migrating.rst):

- ``tags``: one ``X-Tag`` header each (what anymail writes, and what its webhook and ours read
  back); with anymail's ``AMAZON_SES_MESSAGE_TAG_NAME`` setting, the one tag also as an SES
  message tag of that name (more than one tag is then unsupported, as in anymail).
- ``metadata``: an ``X-Metadata`` header (JSON); each item whose key and value fit SES's
  message tag rules is also an SES message tag, so CloudWatch and every event destination
  see it.
- ``merge_metadata``: one send per recipient, each with its own ``X-Metadata`` (``metadata``
  with the recipient's items over it).
- ``envelope_sender``: the return path (v1 ``Source``; v2 ``FeedbackForwardingEmailAddress``,
  and no ``FromEmailAddress``, as anymail sends it).
- ``esp_extra``: SES send parameters, only those of the API in use that set what our options
  set (``ESP_EXTRA_V1``, ``ESP_EXTRA_V2``); the message's content and envelope are not the
  caller's to replace.
- ``track_clicks`` / ``track_opens``: SES tracks through the configuration set's event
  destination, so ``True`` needs a configuration set and ``False`` needs none.
- ``template_id``, ``merge_data``, ``merge_global_data``, ``merge_headers``: unsupported (the
  message is sent as raw MIME, never through an SES template).

An attribute we cannot honour raises ``UnsupportedFeature`` at ``send_messages``, unless
``SEACUCUMBER_IGNORE_UNSUPPORTED_FEATURES`` (else anymail's own ``IGNORE_UNSUPPORTED_FEATURES``)
is on: then it is dropped, as anymail drops it. ``send_at`` is not read here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import policy
from typing import Any

from django.conf import settings as django_settings

from ..conf import conf
from ..exceptions import HeaderInjection, InvalidMessage, UnsupportedFeature
from ..mime import line_break

#: Every attribute read, in anymail's names. One ``getattr`` each (about 1 µs for a message
#: with none of them); nothing more is done for such a message.
ATTRIBUTES = ("tags", "metadata", "envelope_sender", "esp_extra", "merge_metadata",
              "track_clicks", "track_opens", "template_id", "merge_data",
              "merge_global_data", "merge_headers")
_TRACKING = ("track_clicks", "track_opens")
#: What anymail's Amazon SES backend is called in its errors (and its signals' ``esp_name``).
ESP_NAME = "Amazon SES"

#: ``esp_extra`` parameters of v1 ``SendRawEmail`` -> the option that sets the same thing.
ESP_EXTRA_V1 = {"ConfigurationSetName": "configuration_set", "Tags": "tags",
                "SourceArn": "source_arn", "FromArn": "from_arn",
                "ReturnPathArn": "return_path_arn", "Source": "return_path"}
#: ``esp_extra`` parameters of v2 ``SendEmail`` -> the option that sets the same thing.
ESP_EXTRA_V2 = {"ConfigurationSetName": "configuration_set", "EmailTags": "tags",
                "FromEmailAddressIdentityArn": "from_arn",
                "FeedbackForwardingEmailAddress": "return_path",
                "FeedbackForwardingEmailAddressIdentityArn": "return_path_arn",
                "ListManagementOptions": "list_management", "TenantName": "tenant"}
#: Send parameters that are the message itself (or a setting's): never from ``esp_extra``.
_NOT_EXTRA = {
    "Destination": "the recipients are the message's", "Destinations": "the recipients are "
    "the message's", "Content": "the content is the message's raw MIME", "RawMessage": "the "
    "content is the message's raw MIME", "FromEmailAddress": "the sender is the message's "
    "from_email (envelope_sender sets the return path)", "ReplyToAddresses": "reply_to is "
    "the message's", "EndpointId": "set AWS_SES_GLOBAL_ENDPOINT_ID",
}
#: SES's rule for message tag names and values (``payload._tag`` checks the same).
_TAG = re.compile(r"[A-Za-z0-9_-]{1,256}")
_RESERVED_TAGS = frozenset({"seacucumber-id", "seacucumber-lane"})
#: Folds header lines as SMTP wants them (CRLF, at most 78 characters where it can),
#: non-ASCII and unbreakable runs as RFC 2047 encoded words, as Django's own headers are.
_HEADER_POLICY = policy.SMTP


def is_unset(value: Any) -> bool:
    """Whether ``value`` is anymail's ``UNSET`` (a class named so) or None: not given."""
    return value is None or (isinstance(value, type) and value.__name__ == "UNSET")


@dataclass(frozen=True)
class AnymailAttributes:
    """What a message's anymail attributes come to: ``options`` (our option names, checked
    with the message's own ``seacucumber_options`` by ``payload.MailerOptions``),
    ``headers`` (header lines put in front of every send's raw MIME),
    ``recipient_metadata`` (``merge_metadata``: the ``X-Metadata`` of each recipient, by
    lowercased address; None without it), ``feedback_address`` (``envelope_sender`` or
    esp_extra's return path was given: v2 forwards feedback to it) and the tracking asked
    for (checked against the configuration set once it is resolved: ``check_tracking``)."""

    options: dict[str, Any] = field(default_factory=dict)
    headers: bytes = b""
    recipient_metadata: dict[str, dict[str, Any]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    feedback_address: bool = False
    tracking: dict[str, bool] = field(default_factory=dict)

    def recipient_headers(self, address: str) -> bytes:
        """The ``X-Metadata`` line of one recipient's send (``merge_metadata``)."""
        if self.recipient_metadata is None:
            return b""
        merged = {**self.metadata, **self.recipient_metadata.get(address.lower(), {})}
        return header_lines("X-Metadata", [_json(merged, "metadata")]) if merged else b""

    def check_tracking(self, configuration_set: str | None) -> None:
        """``UnsupportedFeature`` for ``track_clicks``/``track_opens`` SES cannot honour with
        this configuration set (or none)."""
        for name, wanted in self.tracking.items():
            if wanted and not configuration_set:
                unsupported(f"{name}=True without a configuration set: SES tracks opens and "
                            "clicks through a configuration set's event destination (set "
                            "AWS_SES_CONFIGURATION_SET)")
            if not wanted and configuration_set:
                unsupported(f"{name}=False with configuration set {configuration_set!r}: "
                            "whether SES tracks is the configuration set's choice, not one "
                            "message's")


def ignoring_unsupported() -> bool:
    """``SEACUCUMBER_IGNORE_UNSUPPORTED_FEATURES``, else anymail's
    ``ANYMAIL["IGNORE_UNSUPPORTED_FEATURES"]`` (a project coming from anymail keeps its
    choice), else off."""
    ours = conf.SEACUCUMBER_IGNORE_UNSUPPORTED_FEATURES
    if ours is not None:
        return bool(ours)
    return bool(_anymail_setting("IGNORE_UNSUPPORTED_FEATURES"))


def _anymail_setting(name: str) -> Any:
    """One of anymail's settings as anymail looks it up: ``ANYMAIL[name]``, else
    ``ANYMAIL_<name>``."""
    found = (getattr(django_settings, "ANYMAIL", None) or {}).get(name)
    return found if found is not None else getattr(django_settings, f"ANYMAIL_{name}", None)


def unsupported(feature: str) -> None:
    """Refuse ``feature`` (``UnsupportedFeature``) unless unsupported features are ignored."""
    if not ignoring_unsupported():
        raise UnsupportedFeature(
            f"{ESP_NAME} through Sea Cucumber does not support {feature}. "
            "(SEACUCUMBER_IGNORE_UNSUPPORTED_FEATURES = True drops what is not supported.)")


def read(message: Any) -> AnymailAttributes | None:
    """The anymail attributes ``message`` carries, checked; None when it has none (the
    common case: one ``getattr`` per name). ``UnsupportedFeature`` for one we cannot honour,
    ``HeaderInjection`` for a tag with a line break."""
    found = {}
    for name in ATTRIBUTES:
        value = getattr(message, name, None)
        if not is_unset(value):
            found[name] = value
    if not found:
        return None
    for name in ("template_id", "merge_data", "merge_global_data", "merge_headers"):
        if name in found:
            unsupported(f"{name}: messages are sent as raw MIME, never through an SES "
                        "template")
    options: dict[str, Any] = {}
    if isinstance(found.get("tags"), str | bytes):
        raise InvalidMessage(f"tags must be a list of strings, not {found['tags']!r}")
    tags = [str(tag) for tag in found.get("tags") or ()]
    metadata = _mapping(found.get("metadata") or {}, "metadata")
    headers = header_lines("X-Tag", tags)
    merge_metadata = found.get("merge_metadata")
    recipient_metadata = None
    if merge_metadata:
        recipient_metadata = {str(address).lower(): _mapping(items, "merge_metadata")
                              for address, items in _mapping(merge_metadata,
                                                             "merge_metadata").items()}
    elif metadata:
        headers += header_lines("X-Metadata", [_json(metadata, "metadata")])
    message_tags = {**_metadata_tags(metadata), **_tag_name_tag(tags)}
    if "envelope_sender" in found:
        options["return_path"] = found["envelope_sender"]
    extra = _esp_extra(found.get("esp_extra") or {})
    extra_tags = extra.pop("tags", {})
    options.update(extra)
    if message_tags or extra_tags:
        options["tags"] = {**message_tags, **extra_tags}
    tracking = {name: bool(found[name]) for name in _TRACKING if name in found}
    return AnymailAttributes(options=options, headers=headers,
                             recipient_metadata=recipient_metadata, metadata=metadata,
                             feedback_address="return_path" in options, tracking=tracking)


def header_lines(name: str, values: list[str]) -> bytes:
    """``name: value`` lines, folded and (non-ASCII) encoded by the email package's SMTP
    policy; ``HeaderInjection`` for a value with a line break."""
    lines = []
    for value in values:
        if (char := line_break(value)) is not None:
            raise HeaderInjection(f"header injection refused: {name} {value[:40]!r} contains "
                                  f"a line break ({char})")
        lines.append(_HEADER_POLICY.header_factory(name, value).fold(policy=_HEADER_POLICY))
    return "".join(lines).encode("ascii")


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidMessage(f"{name} must be a dict, not {type(value).__name__}")
    return {str(key): item for key, item in value.items()}


def _json(value: Any, name: str) -> str:
    try:  # ASCII: non-ASCII characters escaped, so the header needs no encoding
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidMessage(f"{name} cannot be sent as JSON: {exc}") from None


def _metadata_tags(metadata: dict[str, Any]) -> dict[str, str]:
    """The metadata items that fit SES's message tag rules (a name and a value of 1 to 256
    ASCII letters, digits, ``_`` and ``-``; strings and integers), as message tags."""
    found = {}
    for key, value in metadata.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue
        text = str(value)
        if _TAG.fullmatch(key) and _TAG.fullmatch(text) and key not in _RESERVED_TAGS:
            found[key] = text
    return found


def _tag_name_tag(tags: list[str]) -> dict[str, str]:
    """anymail's ``AMAZON_SES_MESSAGE_TAG_NAME``: the message's one tag as an SES message
    tag of that name."""
    tag_name = _anymail_setting("AMAZON_SES_MESSAGE_TAG_NAME")
    if not tags or tag_name is None:
        return {}
    if len(tags) > 1:
        unsupported("multiple tags with the AMAZON_SES_MESSAGE_TAG_NAME setting")
    return {str(tag_name): tags[0]}


def _esp_extra(extra: Any) -> dict[str, Any]:
    """``esp_extra`` as our options: each parameter must be one the API in use takes and
    that one of our options sets (``ESP_EXTRA_V1``/``ESP_EXTRA_V2``); its value is then
    checked as that option's."""
    allowed, api, other, other_api = (
        (ESP_EXTRA_V2, "SES v2 SendEmail", ESP_EXTRA_V1, "v1 SendRawEmail")
        if conf.USE_SES_V2 else
        (ESP_EXTRA_V1, "SES v1 SendRawEmail", ESP_EXTRA_V2, "v2 SendEmail (USE_SES_V2)"))
    options: dict[str, Any] = {}
    for name, value in _mapping(extra, "esp_extra").items():
        if name in allowed:
            options[allowed[name]] = _EXTRA_VALUES.get(name, _same)(value)
        elif name in _NOT_EXTRA:
            unsupported(f"esp_extra[{name!r}]: {_NOT_EXTRA[name]}")
        elif name in other:
            unsupported(f"esp_extra[{name!r}]: a parameter of {other_api}; {api} takes "
                        f"{', '.join(sorted(allowed))}")
        else:
            unsupported(f"esp_extra[{name!r}]: not a parameter {api} takes here (allowed: "
                        f"{', '.join(sorted(allowed))})")
    return options


def _same(value: Any) -> Any:
    return value


def _tag_list(value: Any) -> dict[str, str]:
    """SES's ``[{"Name": ..., "Value": ...}]`` as the ``tags`` option's dict."""
    if not isinstance(value, list | tuple) or not all(
            isinstance(item, Mapping) and set(item) == {"Name", "Value"} for item in value):
        raise InvalidMessage(f"esp_extra tags {value!r}: give SES's list of "
                                 "{'Name': ..., 'Value': ...}")
    return {str(item["Name"]): str(item["Value"]) for item in value}


_EXTRA_VALUES: dict[str, Callable[[Any], Any]] = {"Tags": _tag_list, "EmailTags": _tag_list}
