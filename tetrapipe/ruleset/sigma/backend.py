"""A pySigma backend whose queries are DuckDB conditions over tetrapipe's event schema.

pySigma parses the rule (modifiers, wildcards, ``1 of selection_*``, the
condition grammar) and runs :func:`tetrapipe.ruleset.sigma.pipeline.tetragon_pipeline`;
this backend turns the resulting condition tree into SQL the rule compiler and
the vectorized detector run like any hand-written condition.

Sigma's matching semantics are kept: strings compare case-insensitively unless
``|cased`` (``ILIKE`` with ``\\`` as escape, so ``%`` and ``_`` in a value are
literal), ``|re`` is a regular-expression search, ``not`` of a search over a
field the event lacks is true (a missing field matches nothing). Anything
this backend cannot express faithfully raises
:class:`sigma.exceptions.SigmaFeatureNotSupportedByBackendError` with the
reason: a refused rule, never a weaker one.

``CommandLine`` on Linux is ``argv`` joined by spaces, and Sigma authors
write it as typed: ``sh -c ...``. Tetragon reports the resolved binary
(``/bin/sh``) and the arguments after ``argv[0]``, so a command line value
is tried against ``<binary> <arguments>`` and ``<basename> <arguments>``; a
value anchored at the start (equality, ``|startswith``, a regex) matches
either, which is how ``sh -c`` matches ``/bin/sh -c ...``.
"""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.conversion.base import Backend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaFieldReference,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from tetrapipe.ruleset.compiler import sql_literal
from tetrapipe.ruleset.sigma.pipeline import FIELD_MAP, tetragon_pipeline

#: columns holding numbers: a Sigma number compares with ``=``, a string value against their text
NUMERIC = {"pid", "parent_pid", "auid", "dport", "sport"}
#: virtual command-line fields: (binary column, arguments column)
COMMAND_LINES = {
    "command_line": ("process_binary", "arguments"),
    "parent_command_line": ("parent_binary", "parent_arguments"),
}
#: the event is a connection the process opened (Sigma's ``Initiated: 'true'``)
CONNECT = "(kind = 'process_connect' OR function_name IN ('tcp_connect', 'security_socket_connect'))"
PROTOCOL = "lower(replace(protocol, 'IPPROTO_', ''))"
#: user names whose uid is the same on every Linux system; any other name needs a uid-to-name source
KNOWN_USERS = {"root": 0}
_OPS = {CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">", CompareOperators.GTE: ">="}


def refuse(reason: str) -> SigmaFeatureNotSupportedByBackendError:
    return SigmaFeatureNotSupportedByBackendError(reason)


def like_pattern(value: SigmaString) -> str:
    """A Sigma string as a LIKE pattern with ``\\`` as its escape character (``%``, ``_``, ``\\`` literal)."""
    return value.convert(escape_char="\\", wildcard_multi="%", wildcard_single="_", add_escaped="%_\\")


def _like(expr: str, value: SigmaString, cased: bool) -> str:
    if not value.contains_special():
        plain = value.convert(escape_char=None, wildcard_multi=None, wildcard_single=None)
        if cased:
            return f"{expr} = {sql_literal(plain)}"
        return f"lower({expr}) = {sql_literal(plain.lower())}"
    op = "LIKE" if cased else "ILIKE"
    return f"{expr} {op} {sql_literal(like_pattern(value))} ESCAPE '\\'"


def command_line_forms(field: str) -> tuple[str, str, str]:
    """SQL for (``<binary> <arguments>``, ``<basename> <arguments>``, the binary column) of a command line field."""
    binary, args = COMMAND_LINES[field]
    return (
        f"concat_ws(' ', {binary}, {args})",
        f"concat_ws(' ', regexp_extract({binary}, '[^/]*$'), {args})",
        binary,
    )


def _ipv6_hex(expr: str) -> str:
    """An IPv6 address as its 32 lowercase hex digits (``::`` expanded, zone id dropped), in SQL.

    Fixed-width hex strings compare like the numbers they spell, so a CIDR
    range becomes a BETWEEN on text without DuckDB's inet extension (which
    would have to be downloaded at run time).
    """
    a = f"lower(split_part({expr}, '%', 1))"
    head = f"coalesce(string_split(nullif(split_part({a}, '::', 1), ''), ':'), [])"
    tail = f"coalesce(string_split(nullif(split_part({a}, '::', 2), ''), ':'), [])"
    zeros = f"list_transform(range(8 - len({head}) - len({tail})), lambda z: '0')"
    groups = f"CASE WHEN contains({a}, '::') THEN list_concat({head}, {zeros}, {tail}) ELSE string_split({a}, ':') END"
    return f"array_to_string(list_transform({groups}, lambda g: lpad(g, 4, '0')), '')"


def cidr_sql(expr: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """An address column inside a network: IPv4 as an integer interval, IPv6 as a fixed-width hex interval."""
    if network.version == 4:
        octets = " + ".join(
            f"TRY_CAST(split_part({expr}, '.', {i}) AS BIGINT)" + (f" * {256 ** (4 - i)}" if i < 4 else "")
            for i in range(1, 5)
        )
        lo, hi = int(network.network_address), int(network.broadcast_address)
        return f"({expr} NOT LIKE '%:%' AND ({octets}) BETWEEN {lo} AND {hi})"
    lo6, hi6 = (a.exploded.replace(":", "") for a in (network.network_address, network.broadcast_address))
    return f"({expr} LIKE '%:%' AND {_ipv6_hex(expr)} BETWEEN '{lo6}' AND '{hi6}')"


def _join(op: str, parts: list[str]) -> str:
    parts = [p for p in parts if p]
    if not parts:
        return "TRUE" if op == "AND" else "FALSE"
    return parts[0] if len(parts) == 1 else "(" + f" {op} ".join(parts) + ")"


class TetrapipeBackend(Backend):
    """Sigma condition tree -> one DuckDB boolean expression per rule condition."""

    name: ClassVar[str] = "tetrapipe DuckDB conditions over Tetragon events"
    formats: ClassVar[dict[str, str]] = {"default": "DuckDB SQL condition"}
    requires_pipeline: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(processing_pipeline=tetragon_pipeline(), **kwargs)

    # --- boolean structure ---------------------------------------------------------------------

    def convert_condition_as_in_expression(self, cond: ConditionOR | ConditionAND, state: ConversionState) -> str:
        raise AssertionError("in-expressions are disabled (convert_or_as_in is False)")  # pragma: no cover

    def convert_condition_or(self, cond: ConditionOR, state: ConversionState) -> str:
        return _join("OR", [self.convert_condition(a, state) for a in cond.args])

    def convert_condition_and(self, cond: ConditionAND, state: ConversionState) -> str:
        return _join("AND", [self.convert_condition(a, state) for a in cond.args])

    def convert_condition_not(self, cond: ConditionNOT, state: ConversionState) -> str:
        # SQL's NOT of NULL is NULL (no match); Sigma's "not filter" is true when the field is missing
        return f"(NOT coalesce({self.convert_condition(cond.args[0], state)}, FALSE))"

    # --- fields --------------------------------------------------------------------------------

    @staticmethod
    def column(field: str | None) -> str:
        """The SQL of a plain (non-virtual) mapped field; an unmapped field is refused with the reason."""
        known = set(FIELD_MAP.values())
        if field is None or field not in known:
            sigma_names = ", ".join(sorted(FIELD_MAP))
            raise refuse(f"field {field} has no counterpart in Tetragon's events (supported: {sigma_names})")
        if field == "protocol_name":
            return PROTOCOL
        if field == "initiated":
            return CONNECT
        if field in COMMAND_LINES:
            return command_line_forms(field)[0]
        if field == "user_name":
            raise refuse(
                "field User: Tetragon reports uids, not user names, and no uid-to-name source is configured; "
                "only User: root (uid 0) converts"
            )
        return field

    def _string(self, cond: ConditionFieldEqualsValueExpression, cased: bool) -> str:
        field, value = cond.field, cond.value
        assert isinstance(value, SigmaString)
        if field in COMMAND_LINES:
            full, short, _ = command_line_forms(field)
            parts = [_like(full, value, cased)]
            if not value.startswith(SpecialChars.WILDCARD_MULTI):  # anchored at argv[0]: the basename too
                parts.append(_like(short, value, cased))
            return _join("OR", parts)
        if field == "initiated":
            text = str(value).lower()
            if text not in ("true", "false"):
                raise refuse(f"Initiated: {str(value)!r} is neither 'true' nor 'false'")
            return CONNECT if text == "true" else f"(NOT {CONNECT})"
        if field == "user_name":
            name = str(value)
            if value.contains_special() or name.lower() not in KNOWN_USERS:
                raise refuse(
                    f"field User: {name!r}: Tetragon reports uids, not user names, and no uid-to-name source "
                    "is configured; only User: root (uid 0) converts"
                )
            return f"uid = {KNOWN_USERS[name.lower()]}"
        expr = self.column(field)
        if field in NUMERIC:
            expr = f"CAST({expr} AS VARCHAR)"
        return _like(expr, value, cased)

    def convert_condition_field_eq_val_str(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        return self._string(cond, cased=False)

    def convert_condition_field_eq_val_str_case_sensitive(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaCasedString)
        return self._string(cond, cased=True)

    def convert_condition_field_eq_val_num(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaNumber)
        if cond.field in ("initiated", "user_name") or cond.field in COMMAND_LINES:
            return self._string(
                ConditionFieldEqualsValueExpression(cond.field, SigmaString(str(cond.value))), cased=False
            )
        expr = self.column(cond.field)
        if cond.field in NUMERIC:
            return f"{expr} = {cond.value.number}"
        return f"{expr} = {sql_literal(str(cond.value.number))}"

    def convert_condition_field_eq_val_bool(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaBool)
        if cond.field == "initiated":
            return CONNECT if cond.value.boolean else f"(NOT {CONNECT})"
        expr = self.column(cond.field)
        return f"lower(CAST({expr} AS VARCHAR)) = {sql_literal(str(cond.value.boolean).lower())}"

    def convert_condition_field_eq_val_re(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        value = cond.value
        assert isinstance(value, SigmaRegularExpression)
        flags = "".join(
            f
            for flag, f in (
                (SigmaRegularExpressionFlag.IGNORECASE, "i"),
                (SigmaRegularExpressionFlag.MULTILINE, "m"),
                (SigmaRegularExpressionFlag.DOTALL, "s"),
            )
            if flag in value.flags
        )
        pattern = sql_literal(str(value.regexp))
        suffix = f", {sql_literal(flags)})" if flags else ")"
        if cond.field in COMMAND_LINES:
            full, short, _ = command_line_forms(cond.field)
            return f"(regexp_matches({full}, {pattern}{suffix} OR regexp_matches({short}, {pattern}{suffix})"
        expr = self.column(cond.field)
        return f"regexp_matches({expr}, {pattern}{suffix}"

    def convert_condition_field_eq_val_cidr(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        assert isinstance(cond.value, SigmaCIDRExpression)
        return cidr_sql(self.column(cond.field), cond.value.network)

    def convert_condition_field_compare_op_val(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        value = cond.value
        assert isinstance(value, SigmaCompareExpression)
        expr = f"TRY_CAST({self.column(cond.field)} AS DOUBLE)"
        if value.op == CompareOperators.NEQ:
            return f"{expr} <> {value.number.number}"
        return f"{expr} {_OPS[value.op]} {value.number.number}"

    def convert_condition_field_eq_field(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        value = cond.value
        assert isinstance(value, SigmaFieldReference)
        this = self.column(cond.field)
        other = self.column(FIELD_MAP.get(value.field, value.field))
        if value.starts_with:
            return f"starts_with({this}, {other})"
        if value.ends_with:
            return f"ends_with({this}, {other})"
        return f"{this} = {other}"

    def _null_column(self, field: str | None) -> str:
        if field in COMMAND_LINES:
            return command_line_forms(field)[2]
        if field == "user_name":
            return "uid"
        return self.column(field)

    def convert_condition_field_eq_val_null(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        return f"{self._null_column(cond.field)} IS NULL"

    def convert_condition_field_exists(self, cond: ConditionFieldEqualsValueExpression, state: ConversionState) -> str:
        return f"{self._null_column(cond.field)} IS NOT NULL"

    def convert_condition_field_not_exists(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        return f"{self._null_column(cond.field)} IS NULL"

    def convert_condition_field_eq_expansion(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        """``|base64offset``, ``|windash``, ...: the OR of the variants pySigma expanded, none of them empty.

        A variant with no plain character left (``|base64offset`` of a one-letter
        value has one) would match every event: refused, not converted.
        """
        values = cond.value.values  # type: ignore[union-attr]
        for v in values:
            if isinstance(v, SigmaString) and not v.convert(escape_char=None, wildcard_multi="", wildcard_single=""):
                raise refuse(f"field {cond.field}: a variant of an encoded value is empty and would match everything")
        return super().convert_condition_field_eq_expansion(cond, state)

    # --- what Tetragon's events cannot answer ----------------------------------------------------

    def convert_condition_field_eq_val_timestamp_part(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        raise refuse(f"field {cond.field}: time-part modifiers (|minute, |hour, ...) are not supported")

    def convert_condition_field_eq_query_expr(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> str:
        raise refuse(f"field {cond.field}: placeholder or query expressions are not supported")

    def _keyword(self, cond: ConditionValueExpression) -> SigmaFeatureNotSupportedByBackendError:
        return refuse(
            f"keyword search {str(cond.value)!r} (a value without a field): Tetragon's events have no "
            "free-text message to search; name a field"
        )

    def convert_condition_val_str(self, cond: ConditionValueExpression, state: ConversionState) -> str:
        raise self._keyword(cond)

    def convert_condition_val_num(self, cond: ConditionValueExpression, state: ConversionState) -> str:
        raise self._keyword(cond)

    def convert_condition_val_re(self, cond: ConditionValueExpression, state: ConversionState) -> str:
        raise self._keyword(cond)

    def convert_condition_query_expr(self, cond: ConditionValueExpression, state: ConversionState) -> str:
        raise self._keyword(cond)

    # --- correlation rules: converted by tetrapipe.ruleset.sigma.correlation into rule documents ---

    def _correlation(self, rule: Any, *args: Any, **kwargs: Any) -> Any:
        raise refuse(
            f"correlation rule ({getattr(rule.type, 'name', rule.type)}): converted to a threshold or sequence rule "
            "by tetrapipe.ruleset.sigma.correlation, not to one condition"
        )

    convert_correlation_event_count_rule = _correlation
    convert_correlation_value_count_rule = _correlation
    convert_correlation_temporal_rule = _correlation
    convert_correlation_temporal_ordered_rule = _correlation
    convert_correlation_extended_temporal_rule = _correlation
    convert_correlation_extended_temporal_ordered_rule = _correlation
    convert_correlation_value_sum_rule = _correlation
    convert_correlation_value_avg_rule = _correlation
    convert_correlation_value_percentile_rule = _correlation
    convert_correlation_value_median_rule = _correlation

    # --- whole rules ---------------------------------------------------------------------------

    def finish_query(self, rule: SigmaRule, query: Any, state: ConversionState) -> Any:
        return query

    def finalize_query(self, rule: Any, query: Any, index: int, state: ConversionState, output_format: str) -> Any:
        return query

    def finalize_output_default(self, queries: list[Any]) -> Any:
        return queries

    def condition_sql(self, rule: SigmaRule) -> str:
        """The rule's detection as one SQL condition (several Sigma conditions are OR'ed)."""
        queries = self.convert_rule(rule)
        if not queries and not rule._output:  # a correlation's base rule: pySigma keeps its query aside
            queries = rule.get_conversion_result()
        if not queries:
            raise refuse("the rule's condition converts to nothing")
        return _join("OR", [str(q) for q in queries])


def walk(cond: ConditionItem | Any) -> list[Any]:
    """Every node of a parsed condition tree, depth first (the firing-test builder reads the leaves)."""
    out = [cond]
    for arg in getattr(cond, "args", None) or []:
        out += walk(arg)
    return out


__all__ = ["TetrapipeBackend", "cidr_sql", "command_line_forms", "like_pattern", "refuse", "walk"]
