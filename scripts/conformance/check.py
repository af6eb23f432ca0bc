#!/usr/bin/env python3
"""Conformance checks for Guild's machine-readable licence forms.

Every licence template is emitted by `crates/license` in six formats. This
script validates each file with that format's own, independent tooling:

  odrl.jsonld        PyLD expansion offline (vendored ODRL 2.2 context), every
                     expanded term checked against the vendored ODRL 2.2
                     vocabulary (parsed with rdflib) or the Guild profile
                     context, plus the ODRL policy shape.
  rsl.xml            jing against the RSL 1.0 RELAX NG compact grammar.
  content-usage.txt  http-sf (RFC 9651) Dictionary parse, aipref labels, y/n.
  content-signal.txt Cloudflare Content Signals Policy line grammar.
  cc-signals.json    JSON Schema + the CC signals content usage expression.
  tdmrep.json        JSON Schema written from the W3C TDMRep CG report.

Usage:
  check.py [GOLDEN_DIR]       every template x format must be present and valid
  check.py --self-test        samples/good passes, each samples/bad file fails
                              for its stated reason (samples/bad/EXPECT.tsv)
  check.py --file F [F ...]   check single files (format from the file name)

Exit status 0 when everything passes; 1 otherwise, with one line per failing
file naming the file and why.  README.md beside this file says what each
check is checked against (versions, sources, licences).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor"
SCHEMAS = HERE / "schemas"
SAMPLES = HERE / "samples"
REPO = HERE.parent.parent

TEMPLATES = [
    "training-commercial-standard",
    "training-commercial-attribution",
    "retrieval-attribution",
    "research-open",
    "eval-public",
]

# ---------------------------------------------------------------- aipref ---
# Labels defined by the IETF AI Preferences vocabulary draft, section
# "Usage Category Labels".  Source: ietf-wg-aipref/drafts, file
# draft-ietf-aipref-vocab.md at commit 7ca0afce45b3 (2026-08-19), whose text
# is that of draft-ietf-aipref-vocab-07 (tag draft-ietf-aipref-vocab-07).
# draft-ietf-aipref-vocab-08 (2026-09-14) exists; its text could not be read
# from here.  When the draft changes, update this set and the README.
AIPREF_VOCAB_DRAFT = "draft-ietf-aipref-vocab-07"
AIPREF_LABELS = {"train-ai", "search"}
# Parameters we accept on a Content-Usage member.  The vocab draft defines
# none (unknown parameters are ignored by recipients); CC signals 0.1 adds
# `exceptions`.  Anything else from our emitter is a bug.
AIPREF_KNOWN_PARAMS = {"exceptions"}

# ------------------------------------------------------------ CC signals ---
# creativecommons/cc-signals README (commit 2b863d8e1433, 2025-12-04):
# signals/cr, cr-dc, cr-ec, cr-op, version 0.1; expressed as an `exceptions`
# parameter on a Content-Usage member, e.g. `train-ai=n;exceptions=cc-cr`.
CC_SIGNALS = {"cc-cr", "cc-cr-dc", "cc-cr-ec", "cc-cr-op"}
CC_SIGNALS_VERSION = "0.1"

# ------------------------------------------------------- Content Signals ---
CONTENT_SIGNAL_KEYS = {"search", "ai-input", "ai-train"}
CONTENT_SIGNAL_VALUES = {"yes", "no"}

# ------------------------------------------------------------------ ODRL ---
ODRL_NS = "http://www.w3.org/ns/odrl/2/"
ODRL_CONTEXT_URLS = {
    "http://www.w3.org/ns/odrl.jsonld",
    "https://www.w3.org/ns/odrl.jsonld",
}
# The one Guild profile file: the crate's emitter inlines its @context into every
# ODRL form; the checker takes every term that @context defines as the profile.
DEFAULT_GUILD_CONTEXT = REPO / "crates/license/context/guild-licence-v1.jsonld"
# A document may instead reference the profile context by this URL; the offline
# loader serves the file above for it.
DEFAULT_GUILD_CONTEXT_URL = "https://guild.coop/ns/licence/v1.jsonld"
# Namespaces ODRL 2.2 itself uses for policy metadata and literals
# (ODRL Information Model 2.2, section 2.7: Dublin Core metadata).
EXTERNAL_NS_ALLOWED = (
    "http://purl.org/dc/terms/",
    "http://www.w3.org/2001/XMLSchema#",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "http://www.w3.org/2000/01/rdf-schema#",
)
# Namespaces that are well known and never the Guild profile's.
WELL_KNOWN_NS = EXTERNAL_NS_ALLOWED + (
    ODRL_NS,
    "http://www.w3.org/2002/07/owl#",
    "http://www.w3.org/2004/02/skos/core#",
    "http://www.w3.org/2006/vcard/ns#",
    "http://xmlns.com/foaf/0.1/",
    "http://schema.org/",
    "https://schema.org/",
    "http://creativecommons.org/ns#",
)
# Placed first in the document's @context while expanding, so that a term the
# contexts do not define expands into this namespace instead of being dropped
# silently by the JSON-LD expansion algorithm.
UNMAPPED = "urn:guild-conformance:unmapped#"
POLICY_TYPES = {ODRL_NS + t for t in ("Offer", "Agreement", "Set")}
DUTY_PROPS = [ODRL_NS + p for p in ("duty", "obligation", "consequence", "remedy")]
RULE_PROPS = [ODRL_NS + p for p in ("permission", "prohibition")]
CONSTRAINT_PROPS = [ODRL_NS + p for p in ("constraint", "refinement")]
LOGICAL_OPS = [ODRL_NS + p for p in ("and", "or", "xone", "andSequence")]


class Failure(Exception):
    """A file does not conform; the message says why."""


# ===================================================================== ODRL ==
_odrl_terms: set[str] | None = None
_odrl_deprecated: set[str] = set()


def odrl_vocabulary() -> set[str]:
    """Every IRI the vendored ODRL 2.2 ontology defines in the odrl: namespace."""
    global _odrl_terms, _odrl_deprecated
    if _odrl_terms is None:
        import rdflib
        from rdflib.namespace import OWL

        g = rdflib.Graph()
        g.parse(VENDOR / "ODRL22.ttl", format="turtle")
        _odrl_terms = {
            str(s)
            for s in g.subjects()
            if isinstance(s, rdflib.URIRef) and str(s).startswith(ODRL_NS) and "#" not in str(s)
        }
        _odrl_deprecated = {str(s) for s in g.subjects(OWL.deprecated, rdflib.Literal(True))}
        if len(_odrl_terms) < 150:
            raise RuntimeError(f"vendored ODRL vocabulary looks truncated: {len(_odrl_terms)} terms")
    return _odrl_terms


class GuildProfile:
    """Terms and namespaces the Guild profile context defines."""

    def __init__(self, path: Path, url: str):
        self.path = path
        self.url = url
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise Failure(f"Guild profile context {path} does not exist (pass --guild-context)")
        except (ValueError, UnicodeDecodeError) as e:
            raise Failure(f"Guild profile context {path} is not JSON: {e}")
        ctx = doc.get("@context") if isinstance(doc, dict) else None
        if ctx is None:
            raise Failure(f"Guild profile context {path} has no @context")
        self.document = doc
        ctxs = ctx if isinstance(ctx, list) else [ctx]
        defs: dict[str, object] = {}
        for c in ctxs:
            if isinstance(c, dict):
                defs.update(c)
            elif isinstance(c, str) and c not in ODRL_CONTEXT_URLS:
                raise Failure(f"Guild profile context imports {c}, which is not vendored")
        prefixes = {
            k: v for k, v in defs.items()
            if isinstance(v, str) and not k.startswith("@") and v.endswith(("/", "#"))
        }

        def resolve(v: str) -> str:
            if ":" in v:
                pfx, rest = v.split(":", 1)
                if pfx in prefixes and not rest.startswith("//"):
                    return prefixes[pfx] + rest
            return v

        self.namespaces = {v for v in prefixes.values() if v not in WELL_KNOWN_NS}
        vocab = defs.get("@vocab")
        if isinstance(vocab, str) and vocab not in WELL_KNOWN_NS:
            self.namespaces.add(resolve(vocab))
        self.terms: set[str] = set()
        bad: list[str] = []
        for term, d in defs.items():
            if term.startswith("@") or term in prefixes:
                continue
            iri = d if isinstance(d, str) else (d.get("@id") if isinstance(d, dict) else None)
            if iri is None:
                if isinstance(vocab, str):
                    iri = resolve(vocab) + term
                else:
                    continue
            if iri.startswith("@"):
                continue
            iri = resolve(iri)
            if iri.startswith(ODRL_NS):
                if iri not in odrl_vocabulary():
                    bad.append(f"'{term}' maps to {iri}, which ODRL 2.2 does not define")
                continue
            if not any(iri.startswith(ns) for ns in self.namespaces):
                if not iri.startswith(WELL_KNOWN_NS):
                    bad.append(f"'{term}' maps to {iri}, outside the profile's namespace(s) {sorted(self.namespaces)}")
                continue
            self.terms.add(iri)
        if not self.namespaces:
            bad.append("declares no profile namespace (a prefix ending in '/' or '#')")
        self.definitions = {k: v for k, v in defs.items() if not k.startswith("@")}
        # The profile's own IRI: the node of @type odrl:Profile in the file's @graph
        # (ODRL 2.2 section 2.1: a policy using the profile names it in `profile`).
        self.iri: str | None = None
        graph = doc.get("@graph", [])
        for node in graph if isinstance(graph, list) else [graph]:
            if isinstance(node, dict) and node.get("@type") in ("odrl:Profile", ODRL_NS + "Profile"):
                nid = node.get("@id")
                if isinstance(nid, str):
                    self.iri = resolve(nid)
                    self.terms.add(self.iri)
        if bad:
            raise Failure(f"Guild profile context {path}: " + "; ".join(bad))

    def in_namespace(self, iri: str) -> bool:
        return any(iri.startswith(ns) for ns in self.namespaces)


def _offline_loader(guild: GuildProfile | None):
    odrl_ctx = json.loads((VENDOR / "odrl-context.jsonld").read_text(encoding="utf-8"))

    def loader(url, options=None):
        from pyld.jsonld import JsonLdError

        if url in ODRL_CONTEXT_URLS:
            doc = odrl_ctx
        elif guild is not None and url == guild.url:
            doc = guild.document
        else:
            raise JsonLdError(
                f"remote document {url} is not available offline (only the ODRL 2.2 context "
                f"and the Guild profile context at {guild.url if guild else '(none)'} are served)",
                "jsonld.LoadDocumentError", code="loading document failed")
        return {"contextUrl": None, "documentUrl": url, "document": doc}

    return loader


def _ids(node: dict, prop: str) -> list[str]:
    out = []
    for v in node.get(prop, []):
        if isinstance(v, dict) and "@id" in v:
            out.append(v["@id"])
    return out


def _nodes(node: dict, prop: str) -> list[dict]:
    return [v for v in node.get(prop, []) if isinstance(v, dict) and "@value" not in v]


def _is_abs_iri(s: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$", s))


def check_odrl(path: Path, guild: GuildProfile | None) -> list[str]:
    from pyld import jsonld

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        return [f"not JSON: {e}"]
    if not isinstance(doc, dict) or "@context" not in doc:
        return ["no top-level @context"]
    ctx = doc["@context"]
    ctx_list = ctx if isinstance(ctx, list) else [ctx]
    if not any(c in ODRL_CONTEXT_URLS for c in ctx_list if isinstance(c, str)):
        return ["@context does not include the ODRL 2.2 context (http://www.w3.org/ns/odrl.jsonld)"]
    errors: list[str] = []
    if guild is not None:
        # An inline context may carry the profile's terms (Guild's emitter inlines the
        # whole profile @context so the form expands offline), but only exactly as the
        # profile file defines them: one source of truth.
        for c in ctx_list:
            if not isinstance(c, dict):
                continue
            for k, v in c.items():
                if k in guild.definitions and v != guild.definitions[k]:
                    errors.append(f"@context redefines '{k}' as {json.dumps(v)}; "
                                  f"{guild.path.name} defines it as {json.dumps(guild.definitions[k])}")
    probe = dict(doc)
    probe["@context"] = [{"@vocab": UNMAPPED}] + ctx_list
    try:
        # base None: relative IRIs stay relative (PyLD's default base would
        # turn them into http://example.org/base/... and hide them).
        expanded = jsonld.expand(probe, {"documentLoader": _offline_loader(guild), "base": None})
    except Exception as e:  # PyLD raises JsonLdError; the first cause says most
        while (getattr(e, "cause", None) or e.__cause__) is not None:
            e = getattr(e, "cause", None) or e.__cause__
        msg = e.args[0] if getattr(e, "args", None) else str(e)
        return errors + [f"JSON-LD expansion failed: {msg}"]

    vocab = odrl_vocabulary()
    used_guild: set[str] = set()

    def term(iri: str, where: str) -> None:
        if iri.startswith(UNMAPPED):
            errors.append(f"{where}: '{iri[len(UNMAPPED):]}' is defined neither by the ODRL 2.2 context nor by the Guild profile context")
        elif iri.startswith(ODRL_NS):
            if iri not in vocab:
                errors.append(f"{where}: odrl:{iri[len(ODRL_NS):]} is not an ODRL 2.2 vocabulary term")
            elif iri in _odrl_deprecated:
                errors.append(f"{where}: odrl:{iri[len(ODRL_NS):]} is deprecated in ODRL 2.2")
        elif guild is not None and guild.in_namespace(iri):
            used_guild.add(iri)
            if iri not in guild.terms:
                errors.append(f"{where}: {iri} is in the Guild profile namespace but not defined in {guild.path.name}")
        elif iri.startswith(EXTERNAL_NS_ALLOWED):
            pass
        elif not _is_abs_iri(iri):
            errors.append(f"{where}: '{iri}' did not expand to an absolute IRI")
        else:
            errors.append(f"{where}: {iri} is outside ODRL 2.2 and the Guild profile")

    def walk(node, where: str) -> None:
        if isinstance(node, list):
            for n in node:
                walk(n, where)
            return
        if not isinstance(node, dict):
            return
        if "@value" in node:
            t = node.get("@type")
            if isinstance(t, str):
                term(t, f"{where} datatype")
            return
        if "@list" in node:
            walk(node["@list"], where)
            return
        for t in node.get("@type", []):
            term(t, f"{where} @type")
        for k, v in node.items():
            if k.startswith("@"):
                continue
            short = k[len(ODRL_NS):] if k.startswith(ODRL_NS) else k
            term(k, where)
            for item in v if isinstance(v, list) else [v]:
                if isinstance(item, dict) and set(item) == {"@id"}:
                    iri = item["@id"]
                    if iri.startswith((ODRL_NS, UNMAPPED)) or (guild and guild.in_namespace(iri)):
                        term(iri, f"{where}/{short} value")
                    elif not _is_abs_iri(iri):
                        errors.append(f"{where}/{short}: '{iri}' is not an absolute IRI")
                else:
                    walk(item, f"{where}/{short}")

    walk(expanded, "policy")

    # --- policy shape (ODRL Information Model 2.2, sections 2.1-2.6) ---
    policies = [n for n in expanded if isinstance(n, dict) and set(n.get("@type", [])) & POLICY_TYPES]
    if not policies:
        errors.append("no top-level policy of type Offer, Agreement or Set")
    for p in policies:
        uid = p.get("@id")
        label = uid or "(policy without uid)"
        if not uid or not _is_abs_iri(uid):
            errors.append(f"{label}: policy has no uid that is an absolute IRI")
        types = set(p.get("@type", []))
        if ODRL_NS + "Offer" in types and not _ids(p, ODRL_NS + "assigner"):
            errors.append(f"{label}: an Offer must have an assigner")
        if ODRL_NS + "Agreement" in types:
            for role in ("assigner", "assignee"):
                if not _ids(p, ODRL_NS + role):
                    errors.append(f"{label}: an Agreement must have an {role}")
        rules = [r for prop in RULE_PROPS for r in _nodes(p, prop)]
        obligations = _nodes(p, ODRL_NS + "obligation")
        if not rules and not obligations:
            errors.append(f"{label}: policy has no permission, prohibition or obligation")
        policy_target = bool(_ids(p, ODRL_NS + "target"))
        for prop in RULE_PROPS:
            kind = prop[len(ODRL_NS):]
            for i, r in enumerate(_nodes(p, prop)):
                here = f"{label} {kind}[{i}]"
                if not r.get(ODRL_NS + "action"):
                    errors.append(f"{here}: has no action")
                if not policy_target and not _ids(r, ODRL_NS + "target"):
                    errors.append(f"{here}: has no target (neither on the rule nor on the policy)")
                check_duties(r, here, errors)
                check_constraints(r, here, errors)
        for i, d in enumerate(obligations):
            if not d.get(ODRL_NS + "action"):
                errors.append(f"{label} obligation[{i}]: duty has no action")
            check_duties(d, f"{label} obligation[{i}]", errors)
            check_constraints(d, f"{label} obligation[{i}]", errors)
        if used_guild and not p.get(ODRL_NS + "profile"):
            errors.append(f"{label}: uses Guild profile terms but declares no profile (ODRL 2.2 requires it)")
        elif used_guild and guild is not None and guild.iri and guild.iri not in _ids(p, ODRL_NS + "profile"):
            errors.append(f"{label}: uses Guild profile terms but its profile is not {guild.iri}")
    return errors


def check_duties(rule: dict, where: str, errors: list[str]) -> None:
    for prop in DUTY_PROPS:
        for i, d in enumerate(_nodes(rule, prop)):
            here = f"{where} {prop[len(ODRL_NS):]}[{i}]"
            if not d.get(ODRL_NS + "action"):
                errors.append(f"{here}: duty has no action")
            check_duties(d, here, errors)
            check_constraints(d, here, errors)


def check_constraints(node: dict, where: str, errors: list[str]) -> None:
    for prop in CONSTRAINT_PROPS:
        for i, c in enumerate(_nodes(node, prop)):
            here = f"{where} {prop[len(ODRL_NS):]}[{i}]"
            if any(op in c for op in LOGICAL_OPS):
                continue
            if not c.get(ODRL_NS + "leftOperand"):
                errors.append(f"{here}: constraint has no leftOperand")
            if not c.get(ODRL_NS + "operator"):
                errors.append(f"{here}: constraint has no operator")
            if not (c.get(ODRL_NS + "rightOperand") or c.get(ODRL_NS + "rightOperandReference")):
                errors.append(f"{here}: constraint has no rightOperand")
    for a in node.get(ODRL_NS + "action", []):
        if isinstance(a, dict):
            check_constraints(a, f"{where} action", errors)


# ====================================================================== RSL ==
_rsl_grammar: Path | None = None


def rsl_grammar() -> Path:
    """The vendored RSL 1.0 grammar with the fix-ups README.md lists, in target/.

    The vendored file stays byte-identical to its source (its licence,
    CC BY-ND 4.0, does not allow sharing an adapted copy); the mechanical
    fixes jing needs are applied to a private copy at run time.
    """
    global _rsl_grammar
    if _rsl_grammar is None:
        text = (VENDOR / "rsl-1.0.rnc").read_text(encoding="utf-8")
        fixed = []
        for line in text.splitlines():
            # 1. '##' starts an RNC documentation comment, which may not stand
            #    before a namespace declaration: make the banner a plain comment.
            line = re.sub(r"^##+", "#", line)
            # 2. The name classes use the prefix 'rsl:' which is never declared.
            line = line.replace('default namespace = "https://rslstandard.org/rsl"',
                                'default namespace rsl = "https://rslstandard.org/rsl"')
            if "pattern" in line:
                # 3. XSD regular expressions: a '-' before ']' must be escaped.
                line = re.sub(r"(?<!\\)-\]", r"\\-]", line)
                # 4. XSD patterns are anchored already; '^' and '$' are literals.
                line = line.replace('pattern = "^', 'pattern = "').replace('$" }', '" }')
            fixed.append(line)
        out_dir = REPO / "target" / "conformance"
        out_dir.mkdir(parents=True, exist_ok=True)
        _rsl_grammar = out_dir / "rsl-1.0.fixed.rnc"
        _rsl_grammar.write_text("\n".join(fixed) + "\n", encoding="utf-8")
    return _rsl_grammar


def check_rsl(path: Path, _guild) -> list[str]:
    jing = shutil.which("jing")
    if jing is None:
        return ["jing is not installed (Debian package 'jing'); scripts/conformance/run installs it"]
    r = subprocess.run([jing, "-c", str(rsl_grammar()), str(path)], capture_output=True, text=True)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.strip() and not l.startswith("[warning]")]
    if r.returncode != 0 or lines:
        msgs = [re.sub(r"^.*?:(\d+):(\d+): ", r"line \1:\2: ", l) for l in lines] or [f"jing exited {r.returncode}"]
        return [f"RELAX NG (RSL 1.0 Appendix A): {m}" for m in msgs]
    return []


# ============================================================ Content-Usage ==
def _read_line(path: Path, field: str) -> str:
    text = path.read_text(encoding="ascii")
    lines = [l for l in text.splitlines() if l.strip()]
    if len(lines) != 1:
        raise Failure(f"expected exactly one line, found {len(lines)}")
    line = lines[0]
    if line.lower().startswith(field.lower() + ":"):
        line = line[len(field) + 1:]
    return line.strip(" \t")


def parse_content_usage(value: str, errors: list[str], where: str = "") -> dict:
    import http_sf

    dupes: list[str] = []
    try:
        d = http_sf.parse(value.encode("ascii"), tltype="dictionary",
                          on_duplicate_key=lambda k, _t: dupes.append(k))
    except Exception as e:
        errors.append(f"{where}not an RFC 9651 Dictionary: {e}")
        return {}
    for k in dupes:
        errors.append(f"{where}key '{k}' appears more than once (only the last applies)")
    if not d:
        errors.append(f"{where}empty Dictionary: states no preference at all")
    for key, (val, params) in d.items():
        if key not in AIPREF_LABELS:
            errors.append(f"{where}'{key}' is not a usage category label of {AIPREF_VOCAB_DRAFT} "
                          f"(defined: {', '.join(sorted(AIPREF_LABELS))})")
        if not (isinstance(val, http_sf.Token) and str(val) in ("y", "n")):
            errors.append(f"{where}'{key}': value {val!r} is not the Token y or n")
        for p in params:
            if p not in AIPREF_KNOWN_PARAMS:
                errors.append(f"{where}'{key}': parameter '{p}' is defined by neither the aipref drafts nor CC signals")
    return d


def check_content_usage(path: Path, _guild) -> list[str]:
    errors: list[str] = []
    try:
        value = _read_line(path, "Content-Usage")
    except (Failure, UnicodeDecodeError) as e:
        return [f"Content-Usage: {e}"]
    d = parse_content_usage(value, errors)
    import http_sf
    for key, (_v, params) in d.items():
        if "exceptions" in params:
            ex = params["exceptions"]
            if not (isinstance(ex, http_sf.Token) and str(ex) in CC_SIGNALS):
                errors.append(f"'{key}': exceptions={ex!r} is not a CC signal ({', '.join(sorted(CC_SIGNALS))})")
    return errors


# ========================================================== Content-Signal ==
def check_content_signal(path: Path, _guild) -> list[str]:
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as e:
        return [f"not ASCII: {e}"]
    errors: list[str] = []
    signal_lines = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z-]+)\s*:\s*(.*)$", line)
        if not m:
            errors.append(f"line {n}: not a robots.txt rule: {raw!r}")
            continue
        name = m.group(1).lower()
        if name == "content-signal":
            signal_lines.append((n, m.group(2)))
        elif name not in ("user-agent", "allow", "disallow"):
            errors.append(f"line {n}: unexpected rule '{m.group(1)}'")
    if len(signal_lines) != 1:
        errors.append(f"expected exactly one Content-Signal line, found {len(signal_lines)}")
        return errors
    n, value = signal_lines[0]
    seen: set[str] = set()
    for part in value.split(","):
        part = part.strip()
        m = re.fullmatch(r"([a-z-]+)=([a-z]+)", part)
        if not m:
            errors.append(f"line {n}: '{part}' is not key=value")
            continue
        k, v = m.groups()
        if k not in CONTENT_SIGNAL_KEYS:
            errors.append(f"line {n}: '{k}' is not a Content Signals key ({', '.join(sorted(CONTENT_SIGNAL_KEYS))})")
        if v not in CONTENT_SIGNAL_VALUES:
            errors.append(f"line {n}: '{k}={v}': value must be yes or no")
        if k in seen:
            errors.append(f"line {n}: '{k}' appears more than once")
        seen.add(k)
    return errors


# =============================================================== JSON Schema ==
def _schema_errors(instance, schema_name: str) -> list[str]:
    import jsonschema

    schema = json.loads((SCHEMAS / schema_name).read_text(encoding="utf-8"))
    v = jsonschema.Draft202012Validator(schema)
    out = []
    for e in sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        out.append(f"{where}: {e.message}")
    return out


def _load_json_with_schema(path: Path, schema_name: str, label: str):
    """The parsed document and its schema errors, or (None, [why it is not JSON])."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        return None, [f"not JSON: {e}"]
    return doc, [f"{label} schema: {m}" for m in _schema_errors(doc, schema_name)]


def _http_url(s: str) -> bool:
    u = urlparse(s)
    return u.scheme in ("https", "http") and bool(u.netloc)


def check_tdmrep(path: Path, _guild) -> list[str]:
    doc, errors = _load_json_with_schema(path, "tdmrep.schema.json", "TDMRep")
    if errors:
        return errors
    seen = set()
    for i, rule in enumerate(doc):
        loc = rule["location"]
        if loc in seen:
            errors.append(f"{i}/location: '{loc}' repeats an earlier rule (the first match wins; this one is dead)")
        seen.add(loc)
        if "$" in loc[:-1]:
            errors.append(f"{i}/location: '$' may only end a pattern")
        pol = rule.get("tdm-policy")
        if pol is not None and not _http_url(pol):
            errors.append(f"{i}/tdm-policy: '{pol}' is not an absolute http(s) URL")
    return errors


def check_cc_signals(path: Path, _guild) -> list[str]:
    doc, errors = _load_json_with_schema(path, "cc-signals.schema.json", "CC signals")
    if errors:
        return errors
    signal = doc["signal"]
    expr = doc.get("contentUsage")
    if expr is None:
        return errors
    import http_sf
    d = parse_content_usage(expr, errors, "contentUsage: ")
    carried = set()
    for key, (val, params) in d.items():
        ex = params.get("exceptions")
        if ex is None:
            continue
        ex = str(ex) if isinstance(ex, http_sf.Token) else ex
        carried.add(ex)
        if ex != signal:
            errors.append(f"contentUsage: '{key}' carries exceptions={ex}, but signal is {signal}")
        if isinstance(val, http_sf.Token) and str(val) != "n":
            errors.append(f"contentUsage: '{key}=y' with exceptions: a CC signal qualifies a 'n' preference")
    if signal is not None and signal not in carried:
        errors.append(f"contentUsage: no member carries exceptions={signal}")
    return errors


# ============================================================ bundle forms ==
# The dataset forms of a Guild bundle (crates/bundle): Croissant 1.1 JSON-LD, the
# dataset card (README.md with Hugging Face YAML front matter), the disclosure file.
CROISSANT_1_1 = "http://mlcommons.org/croissant/1.1"
CAR_MEDIA_TYPE = "application/vnd.ipld.car"
UNKNOWN = "unknown: the builder states this"
RAI_REQUIRED = ("rai:dataCollection", "rai:dataCollectionType", "rai:dataUseCases",
                "rai:dataLimitations", "rai:personalSensitiveInformation")
# Hugging Face dataset card metadata keys (huggingface_hub DatasetCardData and the Hub's
# dataset card spec); anything else is a typo.
HF_CARD_KEYS = {
    "license", "license_name", "license_link", "license_details", "pretty_name", "tags",
    "size_categories", "task_categories", "task_ids", "language", "language_details",
    "language_creators", "annotations_creators", "multilinguality", "source_datasets",
    "paperswithcode_id", "configs", "dataset_info", "viewer", "train-eval-index",
}
HF_SIZE_CATEGORIES = {
    "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M",
    "100M<n<1B", "1B<n<10B", "10B<n<100B", "100B<n<1T", "n>1T",
}
HF_LICENSE_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


class _Offline:
    """No socket may connect while a validator runs: everything must be offline."""

    def __enter__(self):
        import socket
        self._socket = socket
        self._connect = socket.socket.connect

        def refuse(*_a, **_k):
            raise OSError("network access attempted during an offline check")
        socket.socket.connect = refuse
        return self

    def __exit__(self, *exc):
        self._socket.socket.connect = self._connect
        return False


def _as_list(v):
    return v if isinstance(v, list) else [] if v is None else [v]


def check_croissant(path: Path, _guild) -> list[str]:
    errors: list[str] = []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        return [f"not JSON: {e}"]
    if not isinstance(doc, dict) or not isinstance(doc.get("@context"), dict):
        return ["@context must be an inline object (the check runs offline)"]
    if CROISSANT_1_1 not in _as_list(doc.get("conformsTo")):
        errors.append(f"conformsTo does not name {CROISSANT_1_1}")
    import logging
    logging.getLogger("absl").setLevel(logging.ERROR)
    import mlcroissant as mlc
    try:
        with _Offline():
            ds = mlc.Dataset(str(path))
            for w in ds.metadata.ctx.issues.warnings:
                errors.append(f"mlcroissant warning: {w}")
            for rs in ds.metadata.record_sets:
                if rs.data is not None:
                    rows = list(ds.records(rs.uuid))
                    if len(rows) != len(rs.data):
                        errors.append(f"record set {rs.uuid}: mlcroissant read {len(rows)} "
                                      f"rows of {len(rs.data)}")
    except mlc.ValidationError as e:
        return errors + [f"mlcroissant validate: {str(e).strip()}"]
    except Exception as e:  # noqa: BLE001 -- any crash of the validator is a failure
        return errors + [f"mlcroissant failed: {type(e).__name__}: {e}"]
    files = [d for d in _as_list(doc.get("distribution"))
             if isinstance(d, dict) and d.get("@type") == "cr:FileObject"]
    for d in files:
        where = f"distribution {d.get('@id')}"
        if not re.fullmatch(r"[0-9a-f]{64}", str(d.get("sha256", ""))):
            errors.append(f"{where}: sha256 must be 64 lower-case hex digits")
        if str(d.get("contentUrl", "")).endswith(".car") and d.get("encodingFormat") != CAR_MEDIA_TYPE:
            errors.append(f"{where}: a CAR's encodingFormat must be {CAR_MEDIA_TYPE}")
    if str(doc.get("identifier", "")).startswith("urn:guild:bundle:"):
        errors += _check_guild_croissant(doc, files)
    return errors


def _check_guild_croissant(doc: dict, files: list) -> list[str]:
    """What a Guild bundle's Croissant must also say (docs/bundle-forms.md)."""
    errors = []
    if not any(str(d.get("contentUrl", "")).endswith(".car") for d in files):
        errors.append("a Guild bundle names its CAR file in distribution")
    licence = doc.get("license")
    if not (isinstance(licence, dict) and str(licence.get("@id", "")).startswith("urn:guild:agreement:")):
        errors.append("license must name the agreement (urn:guild:agreement:<offer CID>)")
    usage = doc.get("usageInfo")
    if not (isinstance(usage, dict) and str(usage.get("url", "")).startswith("urn:guild:agreement:")):
        errors.append("usageInfo must name the ODRL agreement (urn:guild:agreement:<offer CID>)")
    derived = _as_list(doc.get("prov:wasDerivedFrom"))
    if not derived:
        errors.append("prov:wasDerivedFrom must name every member commit")
    for d in derived:
        spec = d.get("prov:specializationOf", {}) if isinstance(d, dict) else {}
        if not str(d.get("@id", "") if isinstance(d, dict) else "").startswith("urn:guild:commit:") \
                or not str(spec.get("@id", "")).startswith("at://did:"):
            errors.append(f"prov:wasDerivedFrom entry {d!r:.80}: a commit "
                          "(urn:guild:commit:<CID>) specializing a repository (at://did:...)")
    for k in RAI_REQUIRED:
        if not doc.get(k):
            errors.append(f"missing {k}")
    desc = json.dumps(doc.get("description", ""))
    m = re.search(r"canary GUID ([0-9a-f-]{36})", desc)
    if m and m.group(1) not in json.dumps(doc.get("rai:dataLimitations", "")):
        errors.append("rai:dataLimitations must carry the canary GUID the description gives")
    return errors


def check_card(path: Path, _guild) -> list[str]:
    import yaml
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---\n" not in text[3:]:
        return ["no YAML front matter (the file must open with a '---' block)"]
    front, body = text[4:].split("\n---\n", 1)
    try:
        meta = yaml.safe_load(front)
    except yaml.YAMLError as e:
        return [f"front matter is not YAML: {e}".replace("\n", " ")]
    if not isinstance(meta, dict):
        return ["front matter is not a YAML mapping"]
    errors = [f"unknown Hugging Face card key '{k}'" for k in meta if k not in HF_CARD_KEYS
              and not str(k).startswith("extra_gated_")]
    lic = meta.get("license")
    if not isinstance(lic, str) or not lic:
        errors.append("license missing")
    if lic == "other":
        if not isinstance(meta.get("license_name"), str) or not HF_LICENSE_NAME.match(meta["license_name"]):
            errors.append("license: other needs a license_name in lower-case kebab case")
        if not isinstance(meta.get("license_link"), str) or not meta["license_link"]:
            errors.append("license: other needs a license_link")
    for k in ("tags", "task_categories", "language"):
        if k in meta and not (isinstance(meta[k], list) and all(isinstance(t, str) for t in meta[k])):
            errors.append(f"{k} must be a list of strings")
    if "pretty_name" in meta and not isinstance(meta["pretty_name"], str):
        errors.append("pretty_name must be a string")
    if "viewer" in meta and not isinstance(meta["viewer"], bool):
        errors.append("viewer must be true or false")
    for v in _as_list(meta.get("size_categories")):
        if v not in HF_SIZE_CATEGORIES:
            errors.append(f"size_categories: '{v}' is not a Hugging Face size category")
    if not body.strip():
        errors.append("the card has no body")
    tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
    if "guild" in tags:
        if "guild bundle verify" not in body:
            errors.append("a Guild card says how to verify the bundle (guild bundle verify)")
        if "evaluation-only" in tags and "canary" not in body.lower():
            errors.append("an evaluation bundle's card carries the canary warning")
    return errors


def check_disclosure(path: Path, _guild) -> list[str]:
    doc, errors = _load_json_with_schema(path, "guild-disclosure.schema.json", "disclosure")
    if errors:
        return [e if len(e) <= 240 else e[:240] + "..." for e in errors]
    items = doc["californiaAb2013"]["items"]
    if [i["item"] for i in items] != list(range(1, 13)):
        errors.append("californiaAb2013.items must be items 1 to 12 of §3111(a), in order")

    def walk(v, where):
        if isinstance(v, str) and v.lower().startswith("unknown") and v != UNKNOWN \
                and not v.startswith(UNKNOWN):
            errors.append(f"{where}: an unknown reads exactly '{UNKNOWN}'")
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{where}.{k}")
        elif isinstance(v, list):
            for n, x in enumerate(v):
                walk(x, f"{where}[{n}]")
    walk(doc, "$")
    return errors


# ==================================================================== driver ==
CHECKS = {
    "odrl.jsonld": check_odrl,
    "rsl.xml": check_rsl,
    "content-usage.txt": check_content_usage,
    "content-signal.txt": check_content_signal,
    "cc-signals.json": check_cc_signals,
    "tdmrep.json": check_tdmrep,
}
# Bundle forms: checked wherever they are, with no completeness rule per template.
BUNDLE_CHECKS = {
    "croissant.json": check_croissant,
    "card.md": check_card,
    "disclosure.json": check_disclosure,
}
ALL_CHECKS = {**CHECKS, **BUNDLE_CHECKS}


def format_of(path: Path) -> str | None:
    for ext in ALL_CHECKS:
        if path.name.endswith("." + ext):
            return ext
    return None


def check_file(path: Path, guild: GuildProfile | None) -> list[str]:
    fmt = format_of(path)
    if fmt is None:
        return [f"unknown format (expected one of: {', '.join(ALL_CHECKS)})"]
    try:
        return ALL_CHECKS[fmt](path, guild)
    except Failure as e:
        return [str(e)]


def load_guild(path: Path, url: str) -> tuple[GuildProfile | None, list[str]]:
    try:
        return GuildProfile(path, url), []
    except Failure as e:
        return None, [str(e)]


def check_dir(golden: Path, guild_path: Path, guild_url: str) -> int:
    """Every template x licence format when the directory holds licence forms (or nothing
    else); every bundle form it holds (`*.croissant.json`, `*.card.md`, `*.disclosure.json`)."""
    guild, gerr = load_guild(guild_path, guild_url)
    failures = [(guild_path, e) for e in gerr]
    passed = 0
    files = sorted(f for f in golden.iterdir() if f.is_file())
    bundle_files = [f for f in files if format_of(f) in BUNDLE_CHECKS]
    licence_files = [f for f in files if format_of(f) in CHECKS]
    if licence_files or not bundle_files:
        for t in TEMPLATES:
            for ext in CHECKS:
                f = golden / f"{t}.{ext}"
                if not f.exists():
                    failures.append((f, "missing: every template x format must be emitted"))
                    continue
                errs = check_file(f, guild)
                failures += [(f, e) for e in errs]
                passed += not errs
    known = {f"{t}.{e}" for t in TEMPLATES for e in CHECKS}
    for f in licence_files:
        if f.name not in known:
            print(f"note: {f} is not a known template id; checked anyway")
            errs = check_file(f, guild)
            failures += [(f, e) for e in errs]
            passed += not errs
    for f in bundle_files:
        errs = check_file(f, guild)
        failures += [(f, e) for e in errs]
        passed += not errs
    for f, e in failures:
        print(f"FAIL {rel(f)}: {e}")
    nfail = len({f for f, _ in failures})
    print(f"conformance: {passed} passed, {nfail} failed")
    return 1 if failures else 0


def rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def self_test(guild_path: Path, guild_url: str) -> int:
    """Good samples must pass; each bad sample must fail for its stated reason.

    The samples use the one Guild profile, the crate's file (--guild-context).
    """
    status = 0
    print("== self-test: samples/good must pass")
    if check_dir(SAMPLES / "good", guild_path, guild_url) != 0:
        status = 1
    print("== self-test: every samples/bad file must fail for its stated reason")
    guild, gerr = load_guild(guild_path, guild_url)
    if gerr:
        print(f"FAIL {rel(guild_path)}: {gerr}")
        return 1
    expect = {}
    for line in (SAMPLES / "bad" / "EXPECT.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, want = line.split("\t", 1)
            expect[name] = want
    files = sorted(f for f in (SAMPLES / "bad").iterdir() if f.name != "EXPECT.tsv")
    ok = bad = 0
    for f in files:
        want = expect.get(f.name)
        if want is None:
            print(f"FAIL {rel(f)}: no expected reason in samples/bad/EXPECT.tsv")
            bad += 1
            continue
        if f.name.endswith(".guild-profile.jsonld"):
            g, errs = load_guild(f, guild_url)
        else:
            errs = check_file(f, guild)
        if not errs:
            print(f"FAIL {rel(f)}: accepted, but should fail with '{want}'")
            bad += 1
        elif not any(want in e for e in errs):
            print(f"FAIL {rel(f)}: failed, but not for the stated reason '{want}': {errs}")
            bad += 1
        else:
            print(f"ok   {rel(f)}: rejected: {next(e for e in errs if want in e)}")
            ok += 1
    for name in sorted(set(expect) - {f.name for f in files}):
        print(f"FAIL samples/bad/{name}: listed in EXPECT.tsv but missing")
        bad += 1
    formats_covered = {format_of(f) for f in files} - {None}
    for ext in ALL_CHECKS:
        if ext not in formats_covered:
            print(f"FAIL self-test: no bad sample for {ext}")
            bad += 1
    print(f"self-test bad samples: {ok} passed, {bad} failed")
    return 1 if (status or bad) else 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("golden", nargs="?", default=str(REPO / "crates/license/tests/golden"))
    ap.add_argument("--guild-context", default=str(DEFAULT_GUILD_CONTEXT),
                    help="the Guild ODRL profile file (default: the crate's, crates/license/context/)")
    ap.add_argument("--guild-context-url", default=DEFAULT_GUILD_CONTEXT_URL,
                    help="a URL by which a document may reference that context instead of inlining it")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--file", nargs="+", help="check these files only")
    a = ap.parse_args(argv)
    if a.self_test:
        return self_test(Path(a.guild_context), a.guild_context_url)
    if a.file:
        guild, gerr = load_guild(Path(a.guild_context), a.guild_context_url)
        rc = 0
        for e in gerr:
            print(f"note: {e}")
        for f in a.file:
            errs = check_file(Path(f), guild)
            for e in errs:
                print(f"FAIL {f}: {e}")
            rc |= bool(errs)
            if not errs:
                print(f"ok   {f}")
        return rc
    golden = Path(a.golden)
    if not golden.is_dir():
        print(f"FAIL {golden}: the golden directory does not exist "
              "(GUILD_BLESS=1 cargo test -p guild-license --test golden writes it)")
        return 1
    return check_dir(golden, Path(a.guild_context), a.guild_context_url)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
