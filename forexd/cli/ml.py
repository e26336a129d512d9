"""``forexd train``, ``forexd search`` and ``forexd models``: the learning layer offline.

:func:`configure` adds one of the three commands and binds its handler. Errors are raised
as :mod:`forexd.errors` types; :mod:`forexd.cli.app` turns them into one line (or JSON) and
an exit code. ``train`` and ``search`` fix the compute budget and the process-wide thread caps
exactly as the daemon does, from the same ``[compute]`` configuration.

``train`` and ``search`` start from the ``params`` of the config's ``[[symbols]]`` entry
for ``--symbol`` when it trades ``ml``, so offline evaluation runs what the daemon runs;
flags override the model kind and the lookback.

Why it is over 400 lines: ``train`` and ``search`` each choose their backend (``--ray``,
the local thread executor or a Ray cluster, :mod:`forexd.daemon.backends`) and close it on
every path; the registry commands share this module's settings and budget helpers, and
splitting them off would duplicate those.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forexd.cli.ml_data import check_extras, cli_budget, load_candle_file
from forexd.cli.options import add_candle_format, add_json, add_location, add_timeframe
from forexd.cli.output import Output, Spinner
from forexd.cli.parser import bind, check_param_names
from forexd.errors import ConfigError

if TYPE_CHECKING:
    from forexd.config import Settings
    from forexd.strategies.ml_params import MlParams


def _configure_models(models: argparse.ArgumentParser) -> None:
    from forexd.cli.compare import add_compare_args

    models.add_argument("models_action", choices=MODEL_ACTIONS, metavar="ACTION",
                        help="list, show ID, promote ID, or compare ID [ID ...]")  # fmt: skip
    models.add_argument("model_id", nargs="?", metavar="ID", help="for show, promote, compare")
    models.add_argument("--symbol", help="list: only this symbol")
    add_json(models)
    add_location(models)
    add_compare_args(models)
    bind(models, handle_models)


def configure(name: str, p: argparse.ArgumentParser) -> None:
    """Add ``train``, ``search`` or ``models`` (whichever ``name`` is) to its parser.

    Args:
        name: the command.
        p: its parser.
    """
    {"train": _configure_train, "search": _configure_search, "models": _configure_models}[name](p)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--symbol", required=True, help="instrument, e.g. EURUSD")
    p.add_argument("--data", required=True, type=Path, help="candle file (plain or .gz)")
    add_candle_format(p)
    add_timeframe(p, default="H1", help="bar size; finer files are resampled")
    p.add_argument("--lookback-candles", type=int, help="candles evaluated (the latest)")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on Ray: auto, host:port of the head, or local ([compute] backend)",
    )
    add_json(p)
    add_location(p)


def _configure_train(train: argparse.ArgumentParser) -> None:
    from forexd.models.spec import MODEL_KINDS

    _data_args(train)
    train.add_argument("--model", choices=MODEL_KINDS, help="model kind (default: config's)")
    train.add_argument(
        "--timesteps",
        type=int,
        help="recurrent_ppo: environment steps per fit (capped by the compute budget)",
    )
    train.add_argument(
        "--register",
        action="store_true",
        help="also fit the final model and register it as a challenger in the data dir",
    )
    bind(train, handle_train)


def _configure_search(search: argparse.ArgumentParser) -> None:
    from forexd.models.search import SAMPLERS
    from forexd.models.spec import MODEL_KINDS

    _data_args(search)
    plan = search.add_mutually_exclusive_group()
    plan.add_argument(
        "--trials", type=int, help="the study's target total (a re-run finishes the plan)"
    )
    plan.add_argument("--more", type=int, metavar="N", help="add N trials to the study's plan")
    search.add_argument("--sampler", default="tpe", choices=SAMPLERS)
    search.add_argument(
        "--model",
        action="append",
        choices=MODEL_KINDS,
        help="kinds to search (repeat; default: the scikit-learn kinds)",
    )
    search.add_argument("--study-dir", type=Path, help="study storage (default DATA/studies)")
    search.add_argument("--study-name", help="study to create or resume (default SYMBOL-TF)")
    search.add_argument("--timeout-s", type=float, help="start no trial after this long")
    bind(search, handle_search)


MODEL_ACTIONS = ("list", "show", "promote", "compare")


# --------------------------------------------------------------------------- shared


def _settings(args: argparse.Namespace) -> Settings:
    from forexd.config import load_settings

    return load_settings(
        getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        runtime_dir=getattr(args, "runtime_dir", None),
    )


def _base_params(settings: Settings, symbol: str, args: argparse.Namespace) -> MlParams:
    """The config's ``ml`` params for ``symbol`` (or the defaults), with flag overrides."""
    from pydantic import ValidationError

    from forexd.models.spec import ModelSpec
    from forexd.strategies.ml_params import MlParams

    raw: dict[str, Any] = {}
    for sym in settings.symbols:
        if sym.symbol == symbol and sym.strategy == "ml":
            raw = dict(sym.params)
    model = getattr(args, "model", None)
    if isinstance(model, str) and model != dict(raw.get("model") or {}).get("kind"):
        raw["model"] = ModelSpec(kind=model).model_dump(mode="json")
    if args.lookback_candles is not None:
        raw["lookback_candles"] = args.lookback_candles
    timesteps = getattr(args, "timesteps", None)
    if timesteps is not None:  # --timesteps: RL kinds only
        from forexd.models.rl_ppo import timesteps_override

        raw["model"] = timesteps_override(raw.get("model"), timesteps)
    check_param_names(f"{symbol} ml params:", "ml", MlParams, raw)
    try:
        return MlParams(**raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{symbol} ml params: {problems}") from None


# --------------------------------------------------------------------------- train


def handle_train(args: argparse.Namespace, out: Output) -> int:
    """Walk-forward evaluation (and, with ``--register``, a registered challenger)."""
    from forexd.cli.ml_render import fold_table, progress_bar
    from forexd.daemon.backends import make_executor
    from forexd.domain import get_instrument
    from forexd.models.trainconfig import periods_per_year
    from forexd.rl.trainer import train_cycle

    settings = _settings(args)
    with Spinner(out, f"reading {args.data}"):
        symbol, candles, seconds = load_candle_file(args)
    params = _base_params(settings, symbol, args)
    check_extras(params)
    budget = cli_budget(settings, one_thread=params.model.is_rl)
    torch = params.model.uses_torch
    executor = make_executor(settings.compute, budget, ray_address=args.ray, use_gpu=torch)
    if executor.backend != "local" and params.model.is_rl:
        executor.close()
        raise ConfigError(
            f"{params.model.kind} trains in the local bar simulator only; drop --ray "
            '(or set [compute] backend = "local") to train it'
        )
    try:
        if executor.backend == "local":
            what = f"{symbol} {params.model.kind}"
            with progress_bar(enabled=not args.json, what=what) as progress:
                result = train_cycle(
                    candles,
                    params,
                    symbol=symbol,
                    pip_size=get_instrument(symbol).pip_size,
                    n_jobs=budget.blas_threads,
                    bars_per_year=periods_per_year(seconds),
                    progress=progress,
                )
        else:  # one task; fold progress stays on the worker
            from forexd.models.executor import run_one
            from forexd.models.jobs import train_job

            pip = get_instrument(symbol).pip_size
            job = (candles, params, pip, budget.blas_threads, periods_per_year(seconds))
            timeout = settings.compute.task_timeout_s
            with Spinner(out, f"training {symbol} on {executor.describe()['backend']}"):
                result = run_one(
                    executor, train_job, *job, timeout_s=timeout, what=f"train {symbol}"
                )
        backend = executor.describe()
    finally:
        executor.close()
    data: dict[str, Any] = {
        "symbol": symbol,
        "timeframe": args.timeframe,
        "candles": result.candles,
        "model": params.model.model_dump(mode="json"),
        "walk_forward": result.walk_forward.to_dict(),
        "final_model": {
            "train_rows": result.train_rows,
            "data_from": _iso(result.data_from_ts),
            "data_to": _iso(result.data_to_ts),
            "fit_seconds": result.model.info.get("fit_seconds"),
        },
        "seconds": result.seconds,
        "backend": backend,
    }
    if args.register:
        data["registered"] = _register(settings, symbol, args.timeframe, params, result)

    def draw(console: Any) -> None:
        title = f"{symbol} {args.timeframe} walk-forward"
        console.print(fold_table(result.walk_forward, title=title, width=console.width))
        if args.register:
            model_id = data["registered"]["model_id"]
            console.print(
                f"registered challenger {model_id} "
                f"(promote it with: forexd models promote {model_id})",
                markup=False,
                soft_wrap=True,
            )

    return out.result(data, draw)


def _iso(ts: int) -> str:
    from forexd.domain import ns_to_iso

    return ns_to_iso(ts)


def _register(
    settings: Settings, symbol: str, timeframe: str, params: MlParams, result: Any
) -> dict[str, Any]:
    from forexd.daemon.paths import resolve_paths
    from forexd.daemon.trainjob import make_record
    from forexd.models.artifacts import save_model
    from forexd.storage.db import now_ns
    from forexd.storage.model_registry import ModelRegistry, new_model_id

    paths = resolve_paths(settings)
    registry = ModelRegistry(paths.db, paths.models)
    created = now_ns()
    model_id = new_model_id(symbol, created)
    result.model.metadata |= {"symbol": symbol, "timeframe": timeframe, "model_id": model_id}
    save_model(result.model, registry.artifact_path(symbol, model_id))
    record = make_record(
        params, result, registry, symbol=symbol, model_id=model_id, created_ns=created,
        cycle_id=None,
    )  # fmt: skip
    registry.register(record)
    return {"model_id": model_id, "artifact": str(registry.artifact_path(record))}


# --------------------------------------------------------------------------- search


def handle_search(args: argparse.Namespace, out: Output) -> int:
    """Run (or resume) an Optuna study and report its best trial."""
    from forexd.cli.ml_render import search_summary, trial_bar
    from forexd.daemon.backends import make_executor
    from forexd.daemon.paths import resolve_paths
    from forexd.domain import get_instrument
    from forexd.extras import require_extra
    from forexd.models.search import SKLEARN_KINDS, run_search
    from forexd.models.trainconfig import periods_per_year

    optuna = require_extra("optuna", "forexd search")  # before loading data: fail fast
    settings = _settings(args)
    with Spinner(out, f"reading {args.data}"):
        symbol, candles, seconds = load_candle_file(args)
    params = _base_params(settings, symbol, argparse.Namespace(**{**vars(args), "model": None}))
    kinds = tuple(dict.fromkeys(args.model)) if args.model else SKLEARN_KINDS
    budget = cli_budget(settings)
    study_dir = args.study_dir or resolve_paths(settings).data_dir / "studies"
    from forexd.models.spec import TORCH_KINDS

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the bar/summary say enough
    torch = any(k in TORCH_KINDS for k in kinds)
    executor = make_executor(settings.compute, budget, ray_address=args.ray, use_gpu=torch)
    try:
        with trial_bar(enabled=not args.json, total=args.trials or args.more) as on_trial:
            result = run_search(
                candles,
                params,
                symbol=symbol,
                pip_size=get_instrument(symbol).pip_size,
                trials=args.trials,
                more=args.more,
                study_dir=study_dir,
                study_name=args.study_name or f"{symbol}-{args.timeframe}",
                sampler=args.sampler,
                kinds=kinds,
                train_workers=budget.train_workers,
                blas_threads=budget.blas_threads,
                bars_per_year=periods_per_year(seconds),
                timeout_s=args.timeout_s,
                task_timeout_s=settings.compute.task_timeout_s,
                executor=executor,
                on_trial=on_trial,
            )
    finally:
        executor.close()
    data = result.to_dict() | {
        "budget": {"train_workers": budget.train_workers, "blas_threads": budget.blas_threads}
    }
    return out.result(data, lambda console: console.print(search_summary(data)))


# --------------------------------------------------------------------------- models


def handle_models(args: argparse.Namespace, out: Output) -> int:
    """``models list``, ``models show ID``, ``models promote ID`` and ``models compare``."""
    from forexd.cli.ml_render import model_details, models_table
    from forexd.daemon.paths import resolve_paths
    from forexd.storage.model_registry import ModelRegistry

    settings = _settings(args)
    paths = resolve_paths(settings)
    registry = ModelRegistry(paths.db, paths.models)
    if args.models_action == "compare":
        from forexd.cli.compare import handle_compare

        return handle_compare(args, out, settings, registry)
    if args.models_action == "list":
        symbol = args.symbol.upper() if args.symbol else None
        records = [r.to_dict() for r in registry.list(symbol)]
        if not records and not out.as_json:
            which = f" for {symbol}" if symbol else ""
            out.line(
                f"no models registered{which} in {paths.data_dir} yet; train one with "
                "`forexd train --symbol EURUSD --data FILE --register` (same --data-dir), or "
                "run the daemon with an ml symbol, which trains and registers its own"
            )
            return 0
        return out.result(
            records, lambda console: console.print(models_table(records, width=console.width))
        )
    if not args.model_id:
        raise ConfigError(
            f"usage: forexd models {args.models_action} ID (the ids: forexd models list)"
        )
    if args.models_action == "show":
        shown = registry.get(args.model_id).to_dict()
        return out.result(shown, lambda console: console.print(model_details(shown)))
    record = _promote(paths, registry, args.model_id)
    return out.result(record.to_dict(), f"{record.model_id} is now the champion of {record.symbol}")


def _promote(paths: Any, registry: Any, model_id: str) -> Any:
    """Promote offline, holding the daemon's pid lock so none starts meanwhile.

    A running daemon keeps its champion in memory; promoting under it would leave the
    registry and the trading model disagreeing, so that is refused.
    """
    from forexd.daemon.pidlock import PidLock
    from forexd.errors import AlreadyRunningError
    from forexd.models.artifacts import read_metadata

    registry.get(model_id)  # unknown id: a clear error before taking any lock
    lock = PidLock(paths.pidfile)
    try:
        lock.acquire()
    except AlreadyRunningError:
        raise AlreadyRunningError(
            f"a forexd daemon is running on {paths.data_dir} and trades with the champion it "
            f"holds in memory, so {model_id} is not promoted under it; stop it (forexd ctl "
            f"stop --data-dir {paths.data_dir}), run this promote again, then start it: it "
            "loads the new champion at start"
        ) from None
    try:
        read_metadata(registry.artifact_path(registry.get(model_id)))  # refuse a broken file
        return registry.set_champion(model_id)
    finally:
        lock.release()
