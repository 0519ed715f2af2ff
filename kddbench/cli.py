"""The ``kddbench`` command: parses arguments and calls :mod:`kddbench.api`, nothing else."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from .errors import ExitCode, KddbenchError


def _examples(*lines: str) -> str:
    return "\n\n\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _exit_codes() -> str:
    return "\n\n\b\nExit codes:\n" + ExitCode.describe()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             help="Benchmark knowledge distillation and dataset condensation, reproducibly."
             + _examples("kddbench list", "kddbench run suites/quickstart.toml",
                         "kddbench --plugin my_plugin.py run my_suite.toml",
                         "kddbench compare reports/ci/baseline.csv reports/ci/results.csv")
             + _exit_codes())
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE_OR_FILE",
              help="Load a plugin that is not installed (a module name or a .py file). Repeatable.")
@click.option("--disable-plugin", "disabled", multiple=True, metavar="NAME",
              help="Do not load the installed plugin with this entry-point name. Repeatable.")
@click.option("--no-autoload", is_flag=True,
              help="Load no installed plugins (only --plugin ones); also "
              "KDDBENCH_DISABLE_PLUGIN_AUTOLOAD=1.")
@click.version_option(package_name="kddbench")
def cli(plugins, disabled, no_autoload):
    import warnings

    from . import plugins as plugin_mod

    with warnings.catch_warnings():  # printed below as one line each, not as Python warnings
        warnings.simplefilter("ignore", plugin_mod.PluginLoadWarning)
        registry = plugin_mod.configure(plugins, disabled, False if no_autoload else None)
    for warning in registry.load_warnings:
        click.echo(f"warning: {warning}", err=True)


@cli.command("list", help="List every plugin by family, with versions and descriptions."
             + _examples("kddbench list", "kddbench list condenser", "kddbench list --json"))
@click.argument("family", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(family, as_json):
    from .plugins import families as all_families
    from .plugins import get_registry

    reg = get_registry()
    classes = all_families()
    families = list(classes)
    if family:
        matches = [f for f in families if f.startswith(family)
                   or classes[f].title.startswith(family)]
        if not matches:
            from .errors import unknown_message

            raise KddbenchError(unknown_message("plugin family", family, families))
        families = matches
    if as_json:
        out = {f: [{"name": s.name, "version": s.version, "description": s.description,
                    "aliases": list(s.aliases),
                    "options": {k: getattr(v, "default", v) for k, v in s.options.items()},
                    "plugin": reg.owner(f, s.name)}
                   for s in (reg.specs[f][n] for n in reg.names(f))] for f in families}
        click.echo(json.dumps(out, indent=1, default=str))
        return
    for fam in families:
        click.echo(f"{classes[fam].title} ({len(reg.names(fam))}):")
        for name in reg.names(fam):
            spec = reg.specs[fam][name]
            shown = name + (":<name>" if spec.prefix else "")
            alias = f" (aliases: {', '.join(spec.aliases)})" if spec.aliases else ""
            click.echo(f"  {shown:<18} v{spec.version:<3} {spec.description}{alias}")
        click.echo("")


@cli.command(help="Show one plugin's details, or the cells of a suite file and their state."
             + _examples("kddbench show dm", "kddbench show suites/quickstart.toml"))
@click.argument("name")
@click.option("--out", type=click.Path(), help="Report directory to check cells against.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a suite value before expansion.")
def show(name, out, overrides):
    from .plugins import families, get_registry

    if name.endswith(".toml") or Path(name).is_file():
        _print_plan(name, out, overrides)
        return
    reg = get_registry()
    found = False
    for fam, cls in families().items():
        try:
            spec = reg.get(cls, name)
        except KeyError:
            continue
        if found:  # one name may live in several families (the task kd, the alias kd)
            click.echo("")
        found = True
        shown = spec.name if spec.name == name else f"{name} -> {spec.name} (alias)"
        click.echo(f"{shown}  [{cls.title}]  version {spec.version}")
        click.echo(f"  {spec.description}")
        click.echo(f"  registered by: {reg.owner(fam, spec.name)}")
        click.echo(f"  factory: {spec.factory if isinstance(spec.factory, str) else spec.factory!r}")
        if spec.aliases:
            click.echo(f"  aliases: {', '.join(spec.aliases)}")
        for key, value in dict(spec.options).items():
            click.echo(f"  option {key} = {value!r}")
        for axis_name, axis in dict(getattr(spec, "axis_types", None) or {}).items():
            required = ", required" if axis.required else ""
            doc = f": {axis.doc}" if axis.doc else ""
            click.echo(f"  axis {axis_name} ({axis.describe()}{required}){doc}")
        for rule in getattr(spec, "rules", None) or ():
            click.echo(f"  rule: {rule.describe() if hasattr(rule, 'describe') else rule}")
    if not found:
        from .errors import unknown_message

        every = sorted({n for fam in families() for n in reg.names(fam)})
        raise KddbenchError(unknown_message("plugin", name, every))


def _print_plan(path, out, overrides, only=(), where=()):
    from .api import report_dir, select_experiments
    from .runner import plan
    from .store import ResultStore
    from .suite import load_suite

    suite = load_suite(path, overrides)
    rows = plan(select_experiments(suite, only, where), ResultStore(report_dir(suite, out)))
    import pandas as pd

    frame = pd.DataFrame(rows, dtype=object).drop(columns=["cell_id"]).fillna("—")
    click.echo(frame.to_markdown(index=False, disable_numparse=True))
    counts = frame["state"].value_counts().to_dict()
    click.echo(f"\n{len(rows)} cells: " + ", ".join(f"{v} {k}" for k, v in sorted(
        counts.items())))


@cli.command(help="Check suite files (names, keys, types) without running anything."
             + _examples("kddbench validate suites/*.toml"))
@click.argument("suites", nargs=-1, required=True, type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--force", is_flag=True, help="Expand suites of any size (default limit: 100,000 "
              "cells; also KDDBENCH_MAX_CELLS).")
def validate(suites, overrides, force):
    from .suite import load_suite

    _allow_any_size(force)
    bad = 0
    for path in suites:
        try:
            suite = load_suite(path, overrides)
        except KddbenchError as exc:
            click.echo(str(exc), err=True)
            bad += 1
            continue
        click.echo(f"{path}: ok ({len(suite.cells)} cells, {len(suite.tables)} tables)")
    if bad:
        sys.exit(ExitCode.INVALID_INPUT)


def _allow_any_size(force: bool) -> None:
    """``--force``: lift the limit on the number of cells a suite may expand to, for this
    command (and the workers it starts); restored when the command ends."""
    if force:
        import os

        from .suite import MAX_CELLS_ENV

        before = os.environ.get(MAX_CELLS_ENV)
        os.environ[MAX_CELLS_ENV] = "0"

        def restore():
            if before is None:
                os.environ.pop(MAX_CELLS_ENV, None)
            else:
                os.environ[MAX_CELLS_ENV] = before

        click.get_current_context().call_on_close(restore)


def _slice_options(lead: str):
    """``--only`` and ``--where``, the same for every command that takes a slice of a suite
    (:func:`kddbench.api.select_experiments`)."""
    def apply(command):
        command = click.option(
            "--where", multiple=True, metavar="AXIS=VALUE[|VALUE...]",
            help=f"{lead} the cells whose axis has one of these values, e.g. "
            "dataset=fashion-mnist, 'ipc=1|10', seed=0. Repeatable (all must hold); a "
            "cell's id, hence its record, is the same as in the whole suite.")(command)
        return click.option("--only", multiple=True, metavar="EXPERIMENT",
                            help=f"{lead} these experiments.")(command)
    return apply


@cli.command(help="Run a suite: every cell not yet finished, then rebuild its reports."
             + _examples("kddbench run suites/quickstart.toml",
                         "kddbench run suites/quickstart.toml --dry-run",
                         "kddbench run suites/paper_tables.toml --smoke",
                         "kddbench run suites/paper_tables.toml --device cuda --download",
                         "kddbench run suites/quickstart.toml --set 'experiments.*.seeds=1'",
                         "kddbench run suites/paper_tables.toml --only dd_random_dsa "
                         "--where dataset=fashion-mnist --where 'ipc=1|10'"))
@click.argument("suite", type=click.Path())
@click.option("--out", type=click.Path(), help="Report directory [default: reports/<suite name>].")
@click.option("--device", default="auto", show_default=True,
              help="auto (a GPU when there is one), cpu, cuda, cuda:1, ...")
@click.option("--data-root", type=click.Path(), envvar="KDDBENCH_DATA",
              help="Where data sets live [env KDDBENCH_DATA; default ~/.cache/kddbench/data].")
@click.option("--download/--no-download", default=None,
              help="Allow downloading missing data sets [env KDDBENCH_DOWNLOAD=1].")
@click.option("--cache-dir", type=click.Path(), envvar="KDDBENCH_CACHE",
              help="Artifact cache [env KDDBENCH_CACHE; default ~/.cache/kddbench].")
@click.option("--no-cache", is_flag=True, help="Neither read nor write cached artifacts.")
@click.option("--jobs", "-j", default="auto", show_default=True,
              help="Worker processes; auto = one single-threaded worker per CPU core (max 8), "
              "or 1 on a GPU.")
@click.option("--executor", default=None, help="Executor plugin, options inline: inprocess, process[workers=4], "
              "submitit[partition=gpu,gpus=1] (Slurm; pip install submitit), "
              "ray[address=auto,gpus=1] (pip install ray).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per worker (large CPU tensors stay on glibc's heap: env "
              "KDDBENCH_CPU_ALLOCATOR=heap, the default, or system).")
@click.option("--reporter", "reporters", multiple=True, metavar="NAME",
              help="Also send every finished record to this reporter plugin. Repeatable.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a suite value, e.g. protocols.quick.epochs=5. Repeatable.")
@_slice_options("Run only")
@click.option("--dry-run", is_flag=True, help="List the cells and which are already done, after "
              "the estimated compute of the rest (image passes, and seconds from a short "
              "calibration on --device).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--smoke", is_flag=True, help="Every cell at a tiny budget (declared smoke values, "
              "1 epoch, a few images per class) on stand-in data in a temporary data root; "
              "results go to a temporary directory (or --out), never beside real ones.")
@click.option("--smoke-per-class", type=click.IntRange(min=1), default=None, metavar="N",
              help="Smoke runs: images per class in each split [default: 2].")
@click.option("--no-wait", is_flag=True,
              help="Do not wait for cells another run on the same --out is computing.")
@click.option("--stop-starting-after", "stop_starting_after", default=None, metavar="DURATION",
              help="Start no cell after this long (e.g. 90m, 1.5h, 600s); the running cells "
              "finish, exit 130 if cells are left (as on SIGUSR1).")
@click.option("--force", is_flag=True, help="Run suites of any size (default limit: 100,000 "
              "cells; also KDDBENCH_MAX_CELLS).")
def run(suite, out, device, smoke, smoke_per_class, data_root, download, cache_dir, no_cache, jobs, executor, threads,
        reporters, overrides, only, where, dry_run, no_progress, no_wait, stop_starting_after,
        force):
    _allow_any_size(force)
    stop_in = parse_duration(stop_starting_after) if stop_starting_after is not None else None
    if smoke:  # only an explicit --data-root/--cache-dir counts, not KDDBENCH_DATA/_CACHE
        from .smoke import explicit_paths

        data_root, cache_dir = explicit_paths(click.get_current_context(), data_root, cache_dir)
    if dry_run:
        from .api import check_executor, resolve_jobs
        from .context import resolve_device
        from .cost import print_estimate
        from .plugins import get_registry

        resolve_device(device)  # what a run would refuse, refused here too
        resolve_jobs(jobs, device, 1)
        if executor:
            check_executor(executor, get_registry())
        print_estimate(suite, overrides, device=device, smoke=smoke, out=out, jobs=jobs,
                       smoke_per_class=smoke_per_class, echo=click.echo, only=only,
                       where=where, cache_dir=cache_dir, data_root=data_root)
        if smoke:
            return
        with _one_line_warnings():  # a corrupt record found here is set aside, in one line
            _print_plan(suite, out, overrides, only, where)
        return
    from . import api
    from .report import failures

    timer = None
    if stop_in is not None:
        import threading

        from .runner import stop_after_running

        timer = threading.Timer(stop_in, stop_after_running)
        timer.daemon = True
        timer.start()
    with _one_line_warnings(), _cancelled_after(timer):
        df = api.run(suite, out, smoke=smoke, smoke_per_class=smoke_per_class,
                     overrides=overrides, device=device, data_root=data_root,
                     download=download, cache_dir=cache_dir, use_cache=not no_cache, jobs=jobs,
                     executor=executor, progress=not no_progress, threads=threads, only=only,
                     where=where, reporters=reporters, wait=not no_wait,
                     announce=lambda message: click.echo(message, err=True))
    suite_obj = api.resolve_suite(suite, overrides)
    where = Path(df.attrs["smoke"]["out"]) if smoke else api.report_dir(suite_obj, out)
    click.echo((where / "leaderboard.md").read_text())
    bad = failures(df)
    click.echo(f"results: {where / 'results.csv'}; leaderboard: {where / 'leaderboard.md'}")
    _say_quarantined(where)
    if not bad.empty:
        click.echo(f"{len(bad)} cell(s) failed; their tracebacks are in {where / 'records'}. "
                   "Fix the cause and run again: finished cells are not recomputed.", err=True)
        sys.exit(ExitCode.FAILED_CELLS)
    from .runner import stopping_after_running

    if stopping_after_running() and df.attrs.get("cells_left"):
        why = "SIGUSR1" if stop_in is None else \
            f"SIGUSR1 or --stop-starting-after {stop_starting_after}"
        click.echo(f"stopped after the running cells ({why}): {df.attrs['cells_left']} "
                   "cell(s) not started; run again to go on", err=True)
        sys.exit(ExitCode.INTERRUPTED)


@cli.command(help="Rebuild results.csv and the leaderboards from stored records (no compute)."
             + _examples("kddbench report suites/quickstart.toml",
                         "kddbench report suites/quickstart.toml --out reports/quickstart"))
@click.argument("suite", type=click.Path())
@click.option("--out", type=click.Path(), help="Report directory [default: reports/<suite name>].")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--html", is_flag=True, help="Also write index.html: one self-contained page "
              "(sortable, filterable tables, provenance, every picture inlined).")
def report(suite, out, overrides, html):
    from . import api

    if Path(suite).is_dir():
        out = out or suite
        suite = str(Path(suite) / "suite.toml")
        if not Path(suite).exists():
            raise KddbenchError(f"{Path(out)} holds no suite.toml; pass the suite file instead")
        overrides = tuple(api.saved_overrides(Path(out))) + tuple(overrides)
    with _one_line_warnings():
        api.report(suite, out, overrides, html=html)
    where = api.report_dir(api.resolve_suite(suite, overrides), out)
    click.echo((where / "leaderboard.md").read_text())
    if html:
        click.echo(f"page: {where / 'index.html'}")
    _say_quarantined(where)


@cli.command(help="Where a suite's run stands: done, running (a live claim), failed and pending "
             "cells per experiment and in total, the failed cells' causes and the compute left. "
             "Reads only: safe while a run writes to the same report directory."
             + _examples("kddbench status suites/quickstart.toml",
                         "kddbench status suites/ci.toml --out /tmp/ci --json",
                         "kddbench status suites/paper_tables.toml --where dataset=fashion-mnist"))
@click.argument("suite", type=click.Path())
@click.option("--out", type=click.Path(), help="Report directory [default: reports/<suite name>].")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-estimate", is_flag=True, help="Skip the image-pass estimate of the work left.")
@_slice_options("Only")
def status(suite, out, overrides, as_json, no_estimate, only, where):
    from . import api
    from .status import format_status

    result = api.status(suite, out, overrides, estimate=not no_estimate, only=only,
                        where=where)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1, default=str))
    else:
        click.echo(format_status(result), nl=False)


@cli.command(help="Regression history (keyed by commit): append the gated metrics of a results "
             "table (one row per cell and metric, gated against the last good entry), and/or "
             "draw each metric over the commits (--plot)."
             + _examples("kddbench run suites/ci.toml --out /tmp/ci",
                         "kddbench history /tmp/ci/results.csv --file reports/ci/history.csv",
                         "kddbench history --plot --file reports/ci/history.csv",
                         "kddbench compare --baseline-from-history reports/ci/history.csv "
                         "/tmp/ci/results.csv"))
@click.argument("results", required=False, type=click.Path(exists=True))
@click.option("--file", "history_file", type=click.Path(), help="The history CSV [default: "
              "reports/<suite of RESULTS>/history.csv].")
@click.option("--commit", metavar="REV", help="The commit the results belong to [default: git's "
              "HEAD]; appending a commit again replaces its entry.")
@click.option("--date", help="The entry's date [default: the commit's date, else now].")
@click.option("--machine", help="The machine's name [default: this host's name].")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Gated metric to keep. Repeatable. [default: accuracy]")
@click.option("--tolerance", "tolerances", multiple=True, metavar="[PATTERN=]POINTS",
              help="The gate's allowed change against the last good entry (as compare).")
@click.option("--plot", is_flag=True, help="Draw each metric over the commits.")
@click.option("--figure", type=click.Path(), help="Where --plot saves [default: the history "
              "file with .png].")
def history(results, history_file, commit, date, machine, metrics, tolerances, plot, figure):
    from .compare import parse_tolerances
    from .history import append, format_entries, plot as draw, read_history

    if results is None and not plot:
        raise KddbenchError("give a RESULTS table to append, or --plot (with --file) to draw")
    if results is not None:
        default, patterns = parse_tolerances(tolerances)
        done = append(results, history_file, commit=commit, date=date, machine=machine,
                      metrics=metrics or ("accuracy",), tolerance=default, tolerances=patterns)
        history_file = done["file"]
        click.echo(f"history: {done['rows']} row(s) of commit {done['commit']} in "
                   f"{done['file']} (gate: {done['gate']}"
                   + (f" against {done['baseline']}" if done["baseline"] else "") + ")")
    if plot:
        if history_file is None:
            raise KddbenchError("--plot needs --file HISTORY (or a RESULTS table)")
        hist = read_history(history_file)
        if hist.empty:
            raise KddbenchError(f"history {history_file}: no entries to draw")
        target = Path(figure) if figure else Path(history_file).with_suffix(".png")
        if draw(hist, target) is None:
            raise KddbenchError(f"history {history_file}: no finished value to draw")
        click.echo(format_entries(hist), nl=False)
        click.echo(f"figure: {target}")


def _one_line_warnings():
    """Python warnings raised meanwhile are printed as ``warning: <message>``, one line."""
    import contextlib
    import warnings

    @contextlib.contextmanager
    def scope():
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *args, **kwargs: click.echo(
                f"warning: {message}", err=True)
            yield

    return scope()


def _say_quarantined(where: Path) -> None:
    from .store import ResultStore

    store = ResultStore(where)
    moved = store.quarantined()
    if moved:
        click.echo(f"{len(moved)} corrupt record(s) quarantined in {store.quarantine_dir} "
                   "(their cells are recomputed by the next run; delete the folder once "
                   "read)", err=True)


@cli.command(help="Compare current results with a baseline, cell by cell (each baseline cell "
             "with the current cell of the same configuration and seed). The gate fails closed: "
             "exit 1 on a regression, 5 when plugin or protocol versions differ, 4 when nothing "
             "was compared, a metric column is absent, a table is empty or holds only failed "
             "cells, or a baseline cell or configuration is missing from the current results; "
             "2 for a file that is not a results table. Files are results.csv tables or report "
             "directories. A metric's direction comes from the task that declares it."
             + _examples("kddbench run suites/ci.toml --out /tmp/ci",
                         "kddbench compare reports/ci/baseline.csv /tmp/ci/results.csv",
                         "kddbench compare base.csv cur.csv --tolerance 2.0 "
                         "--tolerance 'macro_f1=3' --metric accuracy --metric macro_f1"))
@click.argument("baseline", type=click.Path())
@click.argument("current", type=click.Path(), required=False)
@click.option("--baseline-from-history", "history_file", type=click.Path(exists=True),
              metavar="HISTORY", help="Compare with the last good entry of a regression history "
              "(kddbench history); then give CURRENT only. Also: BASELINE = history:FILE.")
@click.option("--tolerance", "tolerances", multiple=True, metavar="[PATTERN=]POINTS",
              help="Allowed change of one cell, in the metric's units: a number (the default "
              "for all metrics) or pattern=number; the longest matching pattern wins. "
              "[default: 1.0]")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Metric to gate. Repeatable. [default: accuracy]")
@click.option("--allow-missing", is_flag=True,
              help="A baseline configuration or seed missing from the current results is a "
              "warning, not a failure (for runs of part of a suite).")
@click.option("--allow-version-change", is_flag=True,
              help="Compare configurations whose plugin or protocol versions differ, paired on "
              "their axes and seeds.")
@click.option("--higher-is-better", "higher", multiple=True, metavar="METRIC",
              help="Direction of a metric (or pattern) no installed task declares. Repeatable.")
@click.option("--lower-is-better", "lower", multiple=True, metavar="METRIC",
              help="Likewise, for metrics where lower is better. Repeatable.")
def compare(baseline, current, history_file, tolerances, metrics, allow_missing,
            allow_version_change, higher, lower):
    from . import api
    from .compare import format_comparison, parse_directions, parse_tolerances
    from .history import PREFIX

    if history_file is not None:
        if current is not None:
            raise click.UsageError("with --baseline-from-history give CURRENT only")
        baseline, current = PREFIX + str(history_file), baseline
    elif current is None:
        raise click.UsageError("Missing argument 'CURRENT'.")
    for role, path in (("BASELINE", baseline), ("CURRENT", current)):
        if not (role == "BASELINE" and path.startswith(PREFIX)) and not Path(path).exists():
            raise click.UsageError(f"Invalid value for '{role}': Path {path!r} does not exist.")

    default, patterns = parse_tolerances(tolerances)
    result = api.compare(baseline, current, metrics=metrics or ("accuracy",), tolerance=default,
                         tolerances=patterns, allow_missing=allow_missing,
                         allow_version_change=allow_version_change,
                         directions=parse_directions(higher, lower))
    click.echo(format_comparison(result), nl=False)
    sys.exit(int(result.exit_code))


@cli.command(help="What the artifact cache holds (per kind: entries, size, oldest and newest "
             "write), and pruning it: --prune KIND removes that kind's entries last written "
             "more than --older-than days ago, except those a running build holds. Nothing "
             "is removed without --prune."
             + _examples("kddbench cache", "kddbench cache --list checkpoints",
                         "kddbench cache --prune checkpoints --older-than 7 --dry-run",
                         "kddbench cache --prune all --older-than 90"))
@click.option("--cache-dir", type=click.Path(), envvar="KDDBENCH_CACHE",
              help="The cache [default: $KDDBENCH_CACHE, else ~/.cache/kddbench].")
@click.option("--list", "list_kinds", multiple=True, metavar="KIND",
              help="List this kind's entries one by one (repeatable; 'all' for every kind).")
@click.option("--prune", "prune_kinds", multiple=True, metavar="KIND",
              help="Remove this kind's old entries (repeatable; 'all' for every kind).")
@click.option("--older-than", type=click.FloatRange(min=0), default=7.0, show_default=True,
              metavar="DAYS", help="With --prune: only entries last written before this.")
@click.option("--dry-run", is_flag=True, help="With --prune: say what would go; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cache(cache_dir, list_kinds, prune_kinds, older_than, dry_run, as_json):
    import pandas as pd

    from . import cache_admin
    from .store import ArtifactCache

    store = ArtifactCache(cache_dir)
    if prune_kinds:
        removed, busy = cache_admin.prune(store, prune_kinds, older_than, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        if as_json:
            click.echo(json.dumps({"cache": str(store.root), "dry_run": dry_run,
                                   "removed": [_entry_dict(e) for e in removed],
                                   "in_use": [_entry_dict(e) for e in busy]}, indent=1))
            return
        for e in removed:
            click.echo(f"{verb} {e.kind}/{e.key} ({e.size / 1e6:.2f} MB, "
                       f"{e.age_days():.1f} days old): {e.label}")
        for e in busy:
            click.echo(f"kept {e.kind}/{e.key}: a running build holds its lock")
        click.echo(f"{verb} {len(removed)} entries, {sum(e.size for e in removed) / 1e6:.2f} MB "
                   f"(older than {older_than:g} days) from {store.root}")
        return
    found = cache_admin.entries(store, None if not list_kinds or "all" in list_kinds
                                else list_kinds)
    if as_json:
        click.echo(json.dumps({"cache": str(store.root),
                               "entries": [_entry_dict(e) for e in found]}, indent=1))
        return
    if not found:
        click.echo(f"the cache at {store.root} holds no artifacts")
        return
    click.echo(f"cache: {store.root}\n")
    if list_kinds:
        rows = [{"kind": e.kind, "key": e.key, "MB": round(e.size / 1e6, 2),
                 "days old": round(e.age_days(), 1), "made by": e.label} for e in found]
    else:
        rows = cache_admin.summary(found)
    click.echo(pd.DataFrame(rows).to_markdown(index=False))


def _entry_dict(entry) -> dict:
    return {"kind": entry.kind, "key": entry.key, "bytes": entry.size,
            "written": entry.written, "label": entry.label,
            "files": [str(p) for p in entry.files]}


@cli.command(help="Release the artifacts a suite's cells use: copy them (condensed sets unless "
             "--kind says otherwise) from the artifact cache into the suite's report "
             "directory, under artifacts/, checksums included: the kinds its cells declare, "
             "or that the records of its finished cells list as used (e.g. evaluation), or "
             "'checkpoints': the last state of each computation a killed run left unfinished, "
             "so the next machine resumes it. Any "
             "later run of the suite, or of a suite whose report lies beside it, on any "
             "machine, reads them from there instead of building them again; commit them "
             "with the report so others can finish or re-evaluate it. Exits 4 when none is "
             "in the cache."
             + _examples("kddbench release suites/cross_arch_cpu.toml",
                         "kddbench release suites/matching_tuning_cpu.toml --kind condensed "
                         "--kind el2n_scores",
                         "kddbench release suites/paper_tables.toml --where dataset=fashion-mnist "
                         "--to /tmp/sets"))
@click.argument("suite", type=click.Path())
@click.option("--out", type=click.Path(), help="Report directory [default: reports/<suite name>].")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Artifact kind to release (repeatable) [default: condensed].")
@click.option("--to", type=click.Path(), help="Where to copy them [default: <report dir>/"
              "artifacts, where runs of the suite look].")
@click.option("--cache-dir", type=click.Path(), envvar="KDDBENCH_CACHE",
              help="The cache [default: $KDDBENCH_CACHE, else ~/.cache/kddbench].")
@click.option("--data-root", type=click.Path(), envvar="KDDBENCH_DATA",
              help="Where data sets live (a set's key names its data) [env KDDBENCH_DATA].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_slice_options("Only")
def release(suite, out, overrides, kinds, to, cache_dir, data_root, as_json, only, where):
    from . import api
    from .release import DEFAULT_KINDS, release as _release

    result = _release(api.resolve_suite(suite, overrides), out, kinds=kinds or DEFAULT_KINDS,
                      only=only, where=where, to=to, cache_dir=cache_dir, data_root=data_root)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
        return
    for kind, key, label, mb in result.copied:
        click.echo(f"released {kind}/{key} ({mb:.2f} MB): {label}")
    for kind, label in result.missing:
        click.echo(f"not in the cache (not built yet): {label}")
    if result.removed:
        click.echo(f"{len(result.removed)} released checkpoint(s) of finished work removed")
    size = sum(t[3] for t in result.copied)
    click.echo(f"{len(result.copied)} released ({size:.2f} MB), {len(result.present)} already "
               f"there, {len(result.missing)} not built yet: {result.directory}")


@cli.command(help="Measure training throughput of the shared protocol against a bare torch "
             "loop on the same tensors and model (and a matmul ceiling)."
             + _examples("kddbench bench", "kddbench bench --arch convnet3 --images 512"))
@click.option("--arch", default="convnet3", show_default=True)
@click.option("--images", type=click.IntRange(min=1), default=512, show_default=True,
              help="Training images per run.")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--device", default="auto", show_default=True)
def bench(arch, images, epochs, repeats, device):
    from .bench import protocol_vs_bare

    rows = protocol_vs_bare(arch=arch, images=images, epochs=epochs, repeats=repeats,
                            device=device)
    import pandas as pd

    click.echo(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))


@contextlib.contextmanager
def _cancelled_after(timer):
    """``timer`` (or None) is cancelled when the block ends, however it ends."""
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``"90m"``, ``"1.5h"``, ``"600s"`` or ``"600"`` (seconds); more than 0."""
    raw = str(text).strip().lower()
    scale = _DURATION_UNITS.get(raw[-1:])
    try:
        value = float(raw[:-1] if scale else raw) * (scale or 1.0)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise KddbenchError(f"--stop-starting-after {text!r}: expected a positive duration "
                            "such as 90m, 1.5h or 600s")
    return value


def _terminated(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_on_sigterm():
    """SIGTERM (``kill``, ``timeout``, Slurm at the end of a job's time) stops a run the way
    Ctrl-C does: the workers are stopped, the claims released, finished cells kept, exit 130.
    Returns the previous handler (to put back), or None where none was changed: not the main
    thread, or a handler someone else installed."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _terminated)


def _stop_after_running_on_sigusr1():
    """SIGUSR1 (``kill -USR1 PID``) asks a run to start nothing more and to end when its
    running cells have finished (kddbench.runner.stop_after_running), exit 130 if cells are
    left; the local executors' workers ignore it. Returns the previous handler, or None."""
    import signal
    import threading

    if (threading.current_thread() is not threading.main_thread()
            or not hasattr(signal, "SIGUSR1")
            or signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL):
        return None
    from .runner import stop_after_running

    return signal.signal(signal.SIGUSR1, lambda signum, frame: stop_after_running())


def main(argv=None) -> None:
    previous = _stop_on_sigterm()
    previous_usr1 = _stop_after_running_on_sigusr1()
    try:
        cli.main(args=argv, prog_name="kddbench", standalone_mode=False)
    except KddbenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(int(getattr(exc, "exit_code", ExitCode.INVALID_INPUT)))
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted: finished cells are kept; run again to go on", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.INVALID_INPUT)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    finally:
        import signal

        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_usr1 is not None:
            signal.signal(signal.SIGUSR1, previous_usr1)


if __name__ == "__main__":  # pragma: no cover
    main()
