"""Sigma's Linux taxonomy -> Tetragon's events: log sources, field names, and what has no counterpart.

This is the knowledge half of the conversion (the backend in
:mod:`tetrapipe.ruleset.sigma.backend` is the SQL half). The field mapping is a
pySigma processing pipeline, so the same mapping a SigmaHQ user knows from
other backends applies: ``Image`` becomes the ``process_binary`` column,
``CommandLine`` the virtual ``command_line`` (binary and arguments, see the
backend for its basename rule), and so on. A Sigma field Tetragon does not
report fails the rule in the pipeline with the reason, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from sigma.processing.conditions import IncludeFieldCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import DetectionItemFailureTransformation, FieldMappingTransformation


@dataclass(frozen=True)
class LogSource:
    """Which events a Sigma log source category stands for, and which TracingPolicy makes Tetragon emit them."""

    events: tuple[str, ...]
    base: str | None  # SQL every event of this category satisfies
    policy: str | None  # the TracingPolicy in tracing-policies/ that makes Tetragon emit it


_FILE_KINDS = ("process_kprobe", "process_lsm")
LOGSOURCES: dict[str, LogSource] = {
    "process_creation": LogSource(("process_exec",), None, None),
    "file_event": LogSource(
        _FILE_KINDS, "file_path IS NOT NULL AND file_access IN ('write', 'truncate', 'rename')", "file-monitoring"
    ),
    "file_change": LogSource(
        _FILE_KINDS, "file_path IS NOT NULL AND file_access IN ('write', 'truncate')", "file-monitoring"
    ),
    "file_delete": LogSource(_FILE_KINDS, "file_path IS NOT NULL AND file_access = 'unlink'", "file-monitoring"),
    "file_access": LogSource(_FILE_KINDS, "file_path IS NOT NULL", "file-monitoring"),
    "network_connection": LogSource(("process_kprobe", "process_connect"), "daddr IS NOT NULL", "connect"),
}

#: Sigma field -> column of the event schema (``tetrapipe query --schema``) or one of the backend's
#: virtual fields (``command_line``, ``parent_command_line``, ``initiated``, ``user_name``)
FIELD_MAP: dict[str, str] = {
    "Image": "process_binary",
    "CommandLine": "command_line",
    "ParentImage": "parent_binary",
    "ParentCommandLine": "parent_command_line",
    "CurrentDirectory": "cwd",
    "ProcessId": "pid",
    "ParentProcessId": "parent_pid",
    "LogonId": "auid",
    "User": "user_name",
    "TargetFilename": "file_path",
    "DestinationIp": "daddr",
    "DestinationPort": "dport",
    "SourceIp": "saddr",
    "SourcePort": "sport",
    "Protocol": "protocol_name",
    "Initiated": "initiated",
}

#: fields Sigma rules use that Tetragon does not report, and why (the refusal names the field and this)
MISSING_FIELDS: dict[str, str] = {
    "Hashes": "Tetragon does not hash binaries",
    "md5": "Tetragon does not hash binaries",
    "sha1": "Tetragon does not hash binaries",
    "sha256": "Tetragon does not hash binaries",
    "OriginalFileName": "a Windows PE field",
    "Product": "a Windows PE field",
    "Company": "a Windows PE field",
    "Description": "a Windows PE field",
    "IntegrityLevel": "a Windows field",
    "LogonGuid": "a Windows field",
    "ParentUser": "Tetragon does not report the parent's user",
    "DestinationIsIpv6": "not reported; compare DestinationIp with |cidr instead",
    "SourceHostname": "Tetragon does not resolve source addresses",
    "DestinationHostname": (
        "Tetragon's connect events carry addresses, not host names (the TLS transform's SNI is on tls events, "
        "which a network_connection rule does not read)"
    ),
}


def tetragon_pipeline() -> ProcessingPipeline:
    """The processing pipeline every Sigma rule goes through before the SQL backend sees it.

    A missing field is a failure item (the rule is refused with ``field X:
    reason``) placed before the mapping, so its message names the field as the
    rule author wrote it.
    """
    failures = [
        ProcessingItem(
            DetectionItemFailureTransformation(f"field {name}: {why}"),
            identifier=f"tetrapipe-missing-{name}",
            field_name_conditions=[IncludeFieldCondition([name])],
        )
        for name, why in MISSING_FIELDS.items()
    ]
    return ProcessingPipeline(
        name="tetrapipe: Sigma Linux taxonomy to Tetragon events",
        priority=20,
        items=[
            *failures,
            ProcessingItem(FieldMappingTransformation(dict(FIELD_MAP)), identifier="tetrapipe-field-mapping"),
        ],
    )


__all__ = ["FIELD_MAP", "LOGSOURCES", "MISSING_FIELDS", "LogSource", "tetragon_pipeline"]
