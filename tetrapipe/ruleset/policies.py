"""TracingPolicy files: load, check their structure, and check them against the rules.

A rule over ``process_kprobe`` events only fires if Tetragon is told to emit
them, with arguments where tetrapipe's normalizer looks: the file at position
0 and the permission mask at position 1 of security_file_permission, the path
string at position 1 of sys_openat, the sock at position 0 of tcp_connect...
:data:`HOOK_LAYOUT` is that contract; :func:`check_policy` holds a policy to
it and to the TracingPolicy CRD's shape, and :func:`check_rules_against_policies`
makes sure every policy a rule requires exists and filters on the same paths
and ports the rule's lists name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tetrapipe.config import located
from tetrapipe.ruleset.model import Issue, RuleSet

API_VERSION = "cilium.io/v1alpha1"
KINDS = ("TracingPolicy", "TracingPolicyNamespaced")
SPEC_KEYS = {
    "kprobes",
    "tracepoints",
    "loader",
    "uprobes",
    "lsmhooks",
    "usdts",
    "fentries",
    "podSelector",
    "containerSelector",
    "hostSelector",
    "nodeSelector",
    "lists",
    "enforcers",
    "options",
}
KPROBE_KEYS = {
    "call",
    "syscall",
    "return",
    "message",
    "tags",
    "args",
    "data",
    "returnArg",
    "returnArgAction",
    "selectors",
    "ignore",
}
ARG_KEYS = {"index", "type", "sizeArgIndex", "returnCopy", "maxData", "label", "resolve"}
#: the integer argument types (the ones a Mask operator can test)
_INT_TYPES = {
    "int",
    "sint32",
    "int32",
    "uint32",
    "long",
    "sint64",
    "int64",
    "ulong",
    "uint64",
    "size_t",
    "sint16",
    "int16",
    "uint16",
    "sint8",
    "int8",
    "uint8",
}
ARG_TYPES = _INT_TYPES | {
    "string",
    "skb",
    "sock",
    "char_buf",
    "char_iovec",
    "filename",
    "path",
    "fd",
    "cred",
    "const_buf",
    "nop",
    "bpf_attr",
    "perf_event",
    "bpf_map",
    "bpf_prog",
    "user_namespace",
    "capability",
    "kiocb",
    "iov_iter",
    "load_info",
    "module",
    "syscall64",
    "sint16",
    "int16",
    "uint16",
    "sint8",
    "int8",
    "uint8",
    "kernel_cap_t",
    "cap_inheritable",
    "cap_permitted",
    "cap_effective",
    "linux_binprm",
    "data_loc",
    "net_device",
    "sockaddr",
    "socket",
    "file",
    "dentry",
}
SELECTOR_KEYS = {
    "matchArgs",
    "matchData",
    "matchReturnArgs",
    "matchPIDs",
    "matchBinaries",
    "matchParentBinaries",
    "matchNamespaces",
    "matchCapabilities",
    "matchNamespaceChanges",
    "matchCapabilityChanges",
    "matchWorkloads",
    "matchActions",
    "matchReturnActions",
}
ARG_OPERATORS = {
    "Equal",
    "NotEqual",
    "Prefix",
    "NotPrefix",
    "Postfix",
    "NotPostfix",
    "GT",
    "LT",
    "GreaterThan",
    "LessThan",
    "Mask",
    "SPort",
    "NotSPort",
    "SPortPriv",
    "NotSPortPriv",
    "DPort",
    "NotDPort",
    "DPortPriv",
    "NotDPortPriv",
    "SAddr",
    "NotSAddr",
    "DAddr",
    "NotDAddr",
    "Protocol",
    "Family",
    "State",
    "InMap",
    "NotInMap",
    "CapabilitiesGained",
    "InRange",
    "NotInRange",
    "SubString",
    "SubStringIgnCase",
    "CelExpr",
    "FileType",
    "NotFileType",
}
ACTIONS = {
    "Post",
    "Sigkill",
    "Signal",
    "Override",
    "GetUrl",
    "DnsLookup",
    "NoPost",
    "TrackSock",
    "UntrackSock",
    "NotifyEnforcer",
    "CleanupEnforcerNotification",
    "Set",
    "FollowFD",
    "UnfollowFD",
    "CopyFD",
}
BINARY_OPERATORS = {"In", "NotIn", "Prefix", "NotPrefix", "Postfix", "NotPostfix"}
MAX_SELECTORS = 5
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

#: hook -> the argument types tetrapipe's normalizer expects at each position of ``args``
#: (None = any). Positions are the order of the policy's args list, which is the order
#: Tetragon prints them in; keeping ``index`` equal to the position avoids surprises.
HOOK_LAYOUT: dict[str, list[set[str] | None]] = {
    "security_file_permission": [{"file"}, {"int"}],  # file_path, MAY_* mask -> file_access
    "security_mmap_file": [{"file"}, {"uint32"}],
    "security_file_open": [{"file"}],
    "security_path_truncate": [{"path"}],
    "security_file_truncate": [{"file"}],
    "security_path_unlink": [{"path"}, {"dentry"}],  # rules read every path of the hook
    "security_path_rename": [{"path"}, {"dentry"}, {"path"}, {"dentry"}],
    "security_path_chmod": [{"path"}, None],
    "security_bprm_check": [{"linux_binprm"}],
    "fd_install": [{"int"}, {"file"}],
    "sys_openat": [{"int"}, {"string"}, {"int"}],  # path string at 1, open flags at 2
    "sys_open": [{"string"}, {"int"}],
    "sys_unlinkat": [{"int"}, {"string"}],
    "sys_renameat2": [{"int"}, {"string"}, {"int"}, {"string"}],
    "tcp_connect": [{"sock"}],  # saddr/daddr/sport/dport
    "tcp_close": [{"sock"}],
    "security_socket_connect": [{"socket"}, {"sockaddr"}],
    "sys_setuid": [_INT_TYPES],  # rules read args[0] as the target id
    "sys_setgid": [_INT_TYPES],
    "sys_setreuid": [_INT_TYPES, _INT_TYPES],
    "sys_setresuid": [_INT_TYPES, _INT_TYPES, _INT_TYPES],
    "sys_setns": [_INT_TYPES, _INT_TYPES],
}


@dataclass
class Hook:
    call: str
    args: list[dict[str, Any]]
    line: int
    selectors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Policy:
    name: str
    kind: str
    path: Path
    hooks: list[Hook]
    doc: Any

    def values(self, call: str, index: int, operator: str) -> set[str]:
        """Every matchArgs value a hook's selectors give for (argument index, operator)."""
        out: set[str] = set()
        for hook in self.hooks:
            if hook.call != call:
                continue
            for sel in hook.selectors:
                for m in sel.get("matchArgs") or []:
                    if m.get("index") == index and m.get("operator") == operator:
                        out |= {str(v) for v in m.get("values") or []}
        return out


def _call_name(call: str) -> str:
    """sys_openat, __x64_sys_openat, __arm64_sys_openat -> sys_openat."""
    return re.sub(r"^__(x64|arm64|ia32|s390x)_", "", call)


def read_documents(path: Path) -> list[Any]:
    """Every YAML document of a file (``---`` separated), with positions; raises :class:`located.YamlError`.

    Upstream examples ship a TracingPolicy beside the Pod it guards in one
    file; reading only single-document files refused them as invalid YAML.
    Line numbers count from the top of the file, across documents.
    """
    text = path.read_text(encoding="utf-8")
    try:
        return [doc for doc in yaml.load_all(text, Loader=located.PureLoader) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise located.YamlError(path, mark.line + 1 if mark else 1, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise located.YamlError(path, 1, f"invalid YAML: {exc}") from None


def policy_documents(docs: list[Any]) -> list[Any]:
    """The documents to check as TracingPolicies: a ``List``'s items, other Kubernetes objects left out.

    A document is another object (a Pod, a ConfigMap, a CiliumNetworkPolicy)
    when its kind is not a TracingPolicy kind and its apiVersion is not
    :data:`API_VERSION`; a ``cilium.io/v1alpha1`` document with a mistyped
    kind, or one with no kind at all, is still checked and its problems shown.
    """
    out: list[Any] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out += policy_documents(doc["items"])
        elif (
            isinstance(doc, dict)
            and "kind" in doc
            and doc["kind"] not in KINDS
            and doc.get("apiVersion") != API_VERSION
        ):
            continue
        else:
            out.append(doc)
    return out


def load_policy_file(path: Path) -> tuple[list[Policy], list[Issue]]:
    """The TracingPolicies of one file (every document, other kinds ignored), with their problems."""
    try:
        docs = read_documents(path)
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Issue(path, None, f"cannot read: {exc}")]
    except located.YamlError as exc:
        return [], [Issue(exc.path, exc.line, exc.reason)]
    policies: list[Policy] = []
    issues: list[Issue] = []
    for doc in policy_documents(docs):
        policy, problems = check_policy(path, doc)
        issues += problems
        if policy is not None:
            policies.append(policy)
    return policies, issues


def load_policies(directory: Path | None) -> tuple[dict[str, Policy], list[Issue]]:
    """Every TracingPolicy under ``directory`` by metadata.name, with its structural problems."""
    policies: dict[str, Policy] = {}
    issues: list[Issue] = []
    if directory is None or not directory.is_dir():
        return policies, issues
    for path in sorted(directory.glob("*.y*ml")):
        found, problems = load_policy_file(path)
        issues += problems
        for policy in found:
            if policy.name in policies:
                issues.append(
                    Issue(
                        path,
                        policy.doc.line_of("metadata"),
                        f"policy name {policy.name!r} also used by {policies[policy.name].path}",
                    )
                )
            policies[policy.name] = policy
    return policies, issues


def check_policy(path: Path, doc: Any) -> tuple[Policy | None, list[Issue]]:
    """Structure and argument layout of one TracingPolicy document.

    Every problem is collected (one ``rules lint`` run shows them all); the
    policy is returned only when its name and kind are usable.
    """
    check = _PolicyCheck(path)
    if not isinstance(doc, dict):
        check.err(1, "a TracingPolicy is a YAML mapping")
        return None, check.issues
    name, kind = check.header(doc)
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        check.err(doc.line_of("spec"), "spec must be a mapping")
        return None, check.issues
    check.unknown_keys(spec, SPEC_KEYS, "spec key")
    hooks: list[Hook] = []
    for kp in spec.get("kprobes") or []:
        hook = check.kprobe(spec, kp)
        if hook is not None:
            hooks.append(hook)
    if not any(spec.get(k) for k in ("kprobes", "tracepoints", "uprobes", "lsmhooks", "usdts", "fentries")):
        check.err(doc.line_of("spec"), "the policy hooks nothing")
    if name is None or kind not in KINDS:
        return None, check.issues
    return Policy(name, kind, path, hooks, doc), check.issues


class _PolicyCheck:
    """The checks of :func:`check_policy`, one method per part of the document."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.issues: list[Issue] = []

    def err(self, line: int | None, reason: str) -> None:
        self.issues.append(Issue(self.path, line, reason))

    def unknown_keys(self, node: Any, known: Any, what: str, prefix: str = "") -> None:
        for key in node:
            if key not in known:
                self.err(node.line_of(key), f"{prefix}unknown {what} {key!r}")

    def header(self, doc: Any) -> tuple[str | None, Any]:
        """apiVersion, kind and metadata.name; the name is None when unusable."""
        if doc.get("apiVersion") != API_VERSION:
            self.err(doc.line_of("apiVersion"), f"apiVersion must be {API_VERSION}")
        kind = doc.get("kind")
        if kind not in KINDS:
            self.err(doc.line_of("kind"), f"kind must be one of {', '.join(KINDS)}")
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not _NAME.match(name):
            self.err(doc.line_of("metadata"), "metadata.name must be a DNS-1123 name (lowercase, digits, '-', '.')")
            name = None
        return name, kind

    def kprobe(self, spec: Any, kp: Any) -> Hook | None:
        if not isinstance(kp, dict):
            self.err(spec.line_of("kprobes"), "each kprobe must be a mapping")
            return None
        self.unknown_keys(kp, KPROBE_KEYS, "kprobe key")
        call = kp.get("call")
        if not isinstance(call, str) or not call:
            self.err(kp.line, "kprobe without call")
            return None
        args = kp.get("args") or []
        indexes = self.args(kp, call, args)
        if "returnArg" in kp and not kp.get("return"):
            self.err(kp.line_of("returnArg"), f"{call}: returnArg needs return: true")
        selectors = kp.get("selectors") or []
        if len(selectors) > MAX_SELECTORS:
            self.err(
                kp.line_of("selectors"), f"{call}: at most {MAX_SELECTORS} selectors per hook, not {len(selectors)}"
            )
        for sel in selectors:
            self.selector(kp, call, args, indexes, sel)
        self.layout(kp, call, args)
        return Hook(call, list(args), kp.line, list(selectors))

    def args(self, kp: Any, call: str, args: list[Any]) -> list[int]:
        """Each argument's keys, index and type; returns the indexes listed."""
        indexes: list[int] = []
        for a in args:
            if not isinstance(a, dict):
                self.err(kp.line_of("args"), f"{call}: each arg must be a mapping")
                continue
            self.unknown_keys(a, ARG_KEYS, "arg key", f"{call}: ")
            idx, typ = a.get("index"), a.get("type")
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx <= 5:
                self.err(a.line, f"{call}: arg index must be 0..5")
                continue
            if idx in indexes:
                self.err(a.line, f"{call}: arg index {idx} listed twice")
            indexes.append(idx)
            if typ not in ARG_TYPES:
                self.err(a.line_of("type"), f"{call}: unknown arg type {typ!r}")
            if "sizeArgIndex" in a and not (isinstance(a["sizeArgIndex"], int) and 1 <= a["sizeArgIndex"] <= 6):
                self.err(a.line_of("sizeArgIndex"), f"{call}: sizeArgIndex is 1-based (1..6)")
            if a.get("returnCopy") and not kp.get("return"):
                self.err(a.line_of("returnCopy"), f"{call}: returnCopy needs return: true")
        return indexes

    def selector(self, kp: Any, call: str, args: list[Any], indexes: list[int], sel: Any) -> None:
        if not isinstance(sel, dict):
            self.err(kp.line_of("selectors"), f"{call}: each selector must be a mapping")
            return
        self.unknown_keys(sel, SELECTOR_KEYS, "selector key", f"{call}: ")
        for m in sel.get("matchArgs") or []:
            self.match_args(call, args, indexes, m)
        for m in sel.get("matchBinaries") or []:
            if m.get("operator") not in BINARY_OPERATORS:
                self.err(m.line, f"{call}: unknown matchBinaries operator {m.get('operator')!r}")
        for act in sel.get("matchActions") or []:
            if act.get("action") not in ACTIONS:
                self.err(act.line, f"{call}: unknown action {act.get('action')!r}")
            if act.get("action") == "Override" and "argError" not in act:
                self.err(act.line, f"{call}: Override needs argError (the errno to return, e.g. -1)")

    def match_args(self, call: str, args: list[Any], indexes: list[int], m: Any) -> None:
        op = m.get("operator")
        if m.get("index") not in indexes:
            self.err(m.line, f"{call}: matchArgs index {m.get('index')} is not one of the hook's args {indexes}")
        if op not in ARG_OPERATORS:
            self.err(m.line_of("operator"), f"{call}: unknown matchArgs operator {op!r}")
        if not m.get("values") and op not in ("CapabilitiesGained",):
            self.err(m.line, f"{call}: matchArgs without values")
        if op != "Mask":
            return
        typ = next((a.get("type") for a in args if a.get("index") == m.get("index")), None)
        if typ not in _INT_TYPES:
            self.err(m.line, f"{call}: Mask needs an integer argument, arg {m.get('index')} is {typ}")
        for v in m.get("values") or []:
            if not str(v).isdigit():
                self.err(m.line, f"{call}: Mask value {v!r} is not a number")

    def layout(self, kp: Any, call: str, args: list[Any]) -> None:
        """The hooks tetrapipe reads by position must list their arguments where it looks."""
        layout = HOOK_LAYOUT.get(_call_name(call))
        if layout is None:
            return
        for pos, want in enumerate(layout):
            if want is None:
                continue
            wanted = "/".join(sorted(want))
            if pos >= len(args):
                self.err(
                    kp.line, f"{call}: tetrapipe reads argument {pos} ({wanted}); the policy lists only {len(args)}"
                )
                return
            a = args[pos]
            if a.get("type") not in want:
                self.err(
                    a.line, f"{call}: argument {pos} must be {wanted} for tetrapipe to read it, not {a.get('type')}"
                )
            if a.get("index") != pos:
                self.err(
                    a.line,
                    f"{call}: the argument at position {pos} has index {a.get('index')}, tetrapipe needs index {pos} "
                    "there (Tetragon prints args in list order, tetrapipe reads them by position)",
                )


def check_rules_against_policies(rs: RuleSet, policies: dict[str, Policy]) -> list[Issue]:
    """Rules must name existing policies; the shipped policies must watch what the rules' lists name."""
    issues: list[Issue] = []
    for rule in rs.rules:
        for name in rule.policies:
            if name not in policies:
                issues.append(
                    Issue(
                        rule.path,
                        rule.line_of("requires"),
                        f"requires policy {name!r}, which is not in the tracing-policies directory "
                        f"(known: {', '.join(sorted(policies)) or 'none'})",
                        rule.id,
                        level="warning",
                    )
                )
    fm = policies.get("file-monitoring")
    if fm is not None:
        accounts = {str(v) for v in rs.lists["account_files"].items} if "account_files" in rs.lists else set()
        for call, idx in (
            ("security_file_permission", 0),
            ("sys_openat", 1),
            ("security_path_unlink", 1),
            ("security_path_rename", 3),
            ("security_path_truncate", 0),
            ("security_file_truncate", 0),
        ):
            got = fm.values(call, idx, "Equal")
            if accounts and not accounts <= got:
                issues.append(
                    Issue(
                        fm.path,
                        None,
                        f"{call} does not watch every account file of @account_files "
                        f"(missing {sorted(accounts - got)})",
                    )
                )
        masks = fm.values("security_file_permission", 1, "Mask")
        if "2" not in masks:
            issues.append(Issue(fm.path, None, "security_file_permission does not select MAY_WRITE (Mask 2)"))
        # every path list a file rule reads must be watched by security_file_permission
        for list_name, operator, what in (
            ("system_binary_dirs", "Prefix", "directory"),
            ("sensitive_files", "Equal", "file"),
            ("sensitive_dirs", "Prefix", "directory"),
        ):
            if list_name not in rs.lists:
                continue
            wanted = {str(v) for v in rs.lists[list_name].items}
            got = fm.values("security_file_permission", 0, operator)
            if not wanted <= got:
                issues.append(
                    Issue(
                        fm.path,
                        None,
                        f"security_file_permission does not watch every {what} of "
                        f"@{list_name} (missing {sorted(wanted - got)})",
                    )
                )
    return issues
