"""The structure of docs/architecture.md, held against the code's own imports.

Each package may import only the packages below it (or, for an adapter, the
domain and the ground); no module imports itself round in a circle; the
shipped service never imports the development tools, the sandbox or tests.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

# What each package may import (besides itself and third-party libraries). The domain is
# three packages: the books (`ledger`) owe through `delivery` and answer with `reads`;
# those two stand on the books' ground alone (GROUND below), never on the books.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "ledger": {"core", "delivery", "reads"},
    "delivery": {"core", "ledger", "reads", "notify"},
    "reads": {"core", "ledger"},
    "present": {"core", "ledger"},
    "notify": {"core", "present", "reads"},
    "processors": {"core", "ledger"},
    "handlers": {"core", "ledger", "delivery", "reads", "present"},
    "jobs": {"core", "ledger", "delivery", "reads", "notify"},
    "worker": {"core", "ledger", "delivery", "reads", "present", "notify", "processors",
               "handlers", "jobs"},
    "sandbox": {"core", "ledger", "processors", "present"},
    "devtools": {"core", "ledger", "present"},
}
DOMAIN = ("ledger", "delivery", "reads")
# The books' ground: the money rules, the payment facts, what an invoice row says and
# what a transaction already read. It imports nothing of the domain above it, so
# `reads` and `delivery`, which stand on it, never reach the books.
GROUND = {"ledger.money", "ledger.facts", "ledger.status", "ledger.context"}
# What of notify/ the domain may ask: the address rule (an endpoint's URL, when stored).
NOTIFY_FOR_THE_DOMAIN = {"notify.addresses"}
OURS = set(ALLOWED) | {"tests", "bench"}


def modules() -> dict[str, Path]:
    found = {}
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path) -> set[str]:
    """Modules of ours a file imports at run time (not under `if TYPE_CHECKING`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] in OURS}


def test_no_package_imports_a_layer_above_it() -> None:
    wrong = []
    for name, path in modules().items():
        package = name.split(".")[0]
        for imported in imports_of(path):
            target = imported.split(".")[0]
            if target != package and target not in ALLOWED[package]:
                wrong.append(f"{name} imports {imported}")
    assert wrong == []


def _module_of(imported: str, known: dict[str, Path]) -> str:
    """The module an import names (`from ledger.status import locked` names ledger.status)."""
    return imported if imported in known else imported.rsplit(".", 1)[0]


def test_reads_and_delivery_stand_on_the_ground_not_on_the_books() -> None:
    """Layers inside the domain, from the bottom: the books' ground, reads/, delivery/,
    the books. The ground imports only itself; reads/ never delivery/; neither reads/ nor
    delivery/ imports a module of the books; the domain asks notify/ only its address rule."""
    known = modules()
    wrong = []
    for name, path in known.items():
        package = name.split(".")[0]
        for imported in {_module_of(i, known) for i in imports_of(path)} & set(known):
            target = imported.split(".")[0]
            if name in GROUND and target != "core" and imported not in GROUND | {"ledger"}:
                wrong.append(f"{name} imports {imported}")
            elif package in ("reads", "delivery") and target == "ledger" \
                    and imported not in GROUND | {"ledger"}:
                wrong.append(f"{name} imports {imported}")
            elif package == "reads" and target == "delivery":
                wrong.append(f"{name} imports {imported}")
            elif package in DOMAIN and target == "notify" \
                    and imported not in NOTIFY_FOR_THE_DOMAIN:
                wrong.append(f"{name} imports {imported}")
    assert wrong == []


def test_no_import_cycle_between_modules() -> None:
    known = modules()
    graph = {name: {i for i in imports_of(path) if i in known and i != name}
             for name, path in known.items()}
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append(visiting[visiting.index(name):] + [name])
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert cycles == []


# How a public function of the domain runs, said by its first argument.
FIRST_ARGUMENTS = {("books", "Books"): "a write: it opens its own transaction",
                   ("pool", "asyncpg.Pool"): "a read: it writes nothing",
                   ("conn", "asyncpg.Connection"): "a step of its caller's transaction"}
WRITES = re.compile(r"\b(insert\s+into|delete\s+from|update\s+\w+\s+set)\b", re.IGNORECASE)


def _strings(node: ast.AST) -> str:
    return " ".join(n.value for n in ast.walk(node)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str))


def test_a_domain_function_says_by_its_first_argument_how_it_runs() -> None:
    """Every public async function of the domain takes first `books: Books` (a write, in a
    transaction of its own), `pool: asyncpg.Pool` (a read: no SQL of it writes) or `conn:
    asyncpg.Connection` (a step of its caller's transaction: it opens none); and nothing
    of the domain is handed the edges' `Services`."""
    wrong = []
    for package in DOMAIN:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            if any(isinstance(n, ast.Name) and n.id == "Services" for n in ast.walk(tree)):
                wrong.append(f"{path.relative_to(ROOT)} names Services")
            for node in tree.body:
                if not isinstance(node, ast.AsyncFunctionDef) or node.name.startswith("_"):
                    continue
                where = f"{path.relative_to(ROOT)}:{node.name}"
                first = (node.args.posonlyargs + node.args.args or [None])[0]
                shape = (first.arg, ast.unparse(first.annotation)) \
                    if first is not None and first.annotation is not None else None
                if shape not in FIRST_ARGUMENTS:
                    wrong.append(f"{where} takes {shape} first")
                elif shape[0] == "pool" and WRITES.search(_strings(node)):
                    wrong.append(f"{where} takes a pool and writes")
                elif shape[0] == "conn" and any(
                        isinstance(n, ast.Attribute) and n.attr in ("transaction", "acquire")
                        for n in ast.walk(node)):
                    wrong.append(f"{where} takes a conn and opens its own")
    assert wrong == []


# A statement that locks rows (not a docstring that speaks of one).
ROW_LOCK = re.compile(r"\bselect\b.*\bfrom\b.*\bfor\s+update\b", re.IGNORECASE | re.DOTALL)


def test_the_books_lock_rows_in_one_module() -> None:
    """`ledger.locks` takes every row lock, in its one order; outside it only the event
    job's claim (`ledger.inbox._claim`) and `skip locked` scans lock rows (its docstring
    says why)."""
    found = []
    for package in DOMAIN:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.relative_to(ROOT).as_posix() == "ledger/locks.py":
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
                    continue
                if path.relative_to(ROOT).as_posix() == "ledger/inbox.py" \
                        and node.name == "_claim":
                    continue
                for constant in ast.walk(node):
                    if isinstance(constant, ast.Constant) and isinstance(constant.value, str) \
                            and ROW_LOCK.search(constant.value) \
                            and "skip locked" not in constant.value.lower():
                        found.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert found == []


# A customer's address written out ("{...}/i/{...}"), not named in prose ("{PUBLIC_URL}/i/...").
ADDRESS_BUILT = re.compile(r"(?<!PUBLIC_URL)\}/(?:i|pay|c)/\{")


def test_each_customer_address_has_one_builder() -> None:
    """`reads.views` writes the invoice page's, a pay link's and the customer page's address
    (`invoice_url`, `pay_url`, `portal_url`); every page, mail, answer and snapshot asks it."""
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for package in ALLOWED for path in sorted((ROOT / package).rglob("*.py"))
             if path.relative_to(ROOT).as_posix() != "reads/views.py"
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if ADDRESS_BUILT.search(line)]
    assert found == []


def test_worker_holds_only_wiring() -> None:
    assert sorted(p.name for p in (ROOT / "worker").glob("*.py")) == [
        "__init__.py", "__main__.py", "app.py", "cli.py", "migrate.py", "opscli.py",
        "runner.py", "services.py"]


# A processor's vocabulary: its event types, statuses, URL templates and settings' names.
PROCESSOR_WORDS = re.compile(
    r"checkout\.session\.|payment_intent\.|charge\.refund|charge\.dispute|CHECKOUT_SESSION_ID"
    r"|requires_action|canceled|payment_status|STRIPE"
    # GoCardless's: its resources and their statuses and actions, its settings.
    r"|billing_request|late_failure|charged_back|chargeback_cancelled|pending_submission"
    r"|paid_out|funds_returned|GOCARDLESS")


def test_the_domain_and_the_ground_speak_settles_words() -> None:
    """The domain (the books, delivery, reads) speaks settle's words; each processor
    translates its own (its package, and the sandbox and tests that play it, may name
    Stripe's words)."""
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for package in (*DOMAIN, "core")
             for path in sorted((ROOT / package).rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if PROCESSOR_WORDS.search(line)]
    assert found == []


def test_core_names_no_processor() -> None:
    """core/ is every process's ground: a processor's settings, library or logger
    (`STRIPE_*`, `stripe`, `GOCARDLESS_*`, `gocardless_pro`) appear only in its package and the wiring that registers it.
    Prose may still name one as an example ("Stripe posts one event")."""
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in sorted((ROOT / "core").rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"stripe|STRIPE|gocardless|GOCARDLESS", line)]
    assert found == []


def third_party_imports_of(path: Path) -> set[str]:
    """Top-level names of every module a file imports, ours or not."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_jobs_know_no_http_library() -> None:
    """Adapters raise settle's errors (`notify.webhook.Undelivered`): aiohttp's stop at
    `notify/`, and the jobs never see them."""
    assert [str(path.relative_to(ROOT)) for path in sorted((ROOT / "jobs").rglob("*.py"))
            if "aiohttp" in third_party_imports_of(path)] == []


# Where the ledger owes a side effect: `owe(conn, "<kind>", ...)`, or an insert into the
# outbox that names its kind in its SQL.
OWED_KIND = re.compile(r"""\bowe\(\w+, "(\w+)"|insert into outbox \(kind[^)]*\)\s+"""
                       r"""(?:values \(|select )'(\w+)'""")


def test_every_kind_the_ledger_owes_has_its_effect() -> None:
    """`jobs.effects.KINDS` is what a worker can perform: each kind the ledger writes to
    the outbox is one of them, and there is none the ledger never owes."""
    from jobs.effects import KINDS

    owed = {first or second
            for package in DOMAIN for path in sorted((ROOT / package).rglob("*.py"))
            for first, second in OWED_KIND.findall(path.read_text())}
    assert owed == {"email", "refund", "expire_checkout", "webhook"}
    assert set(KINDS) == owed
    assert all(effect.kind == kind for kind, effect in KINDS.items())
