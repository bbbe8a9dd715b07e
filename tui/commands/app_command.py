"""`notewell` (no command) opens the app; `notewell demo` opens a demo vault, unlocked."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# The demo vault holds only invented data; its passphrase is documented (README).
DEMO_PASSPHRASE = "notewell demo passphrase"
DEMO_CLINICIAN = ("Demo Clinician", "LCSW")


def build_app(args: argparse.Namespace, *, passphrase: str | None = None):
    """The app on `args.vault`; a settings file it cannot use is named in a notice, and the
    app starts with the defaults."""
    from tui.app import NotewellApp
    from tui.config import load_config_or_defaults

    config, problem = load_config_or_defaults()
    app = NotewellApp(Path(args.vault), config=config, passphrase=passphrase)
    if problem:
        app.call_later(app.notify, problem, title="Settings file", severity="warning", timeout=30, markup=False)
    return app


def run_app(args: argparse.Namespace, *, passphrase: str | None = None) -> int:
    app = build_app(args, passphrase=passphrase)
    app.run()
    return app.return_code or 0


def demo_vault_path(args: argparse.Namespace) -> Path:
    """--vault or NOTEWELL_VAULT when given, else a vault of its own beside the real one."""
    import platformdirs

    from tui.vault_location import default_vault_path

    # The dispatcher has already filled in the default; a different path was asked for.
    if os.environ.get("NOTEWELL_VAULT") or Path(args.vault) != default_vault_path():
        return Path(args.vault)

    return Path(platformdirs.user_data_dir("notewell")) / "demo-vault"


def create_demo_vault(path: Path, *, kdf=None, notes: int = 200, clients: int = 12) -> None:
    from store.models import ClinicianSettings
    from store.synthetic import populate_demo
    from store.vault import Vault

    kwargs = {"kdf": kdf} if kdf is not None else {}
    vault, _recovery = Vault.create(
        path,
        DEMO_PASSPHRASE,
        device_name="demo device",
        settings=ClinicianSettings(clinician_name=DEMO_CLINICIAN[0], credentials=DEMO_CLINICIAN[1]),
        **kwargs,
    )
    try:
        populate_demo(vault, clients=clients, notes=notes, process_notes=8)
    finally:
        vault.close()


def run_demo(args: argparse.Namespace) -> int:
    from store.vault import Vault

    path = demo_vault_path(args)
    if not Vault.exists(path):
        print(f"Creating the demo vault at {path} (invented data only)...", file=sys.stderr)
        create_demo_vault(path)
    print(f"Demo vault: {path}")
    print(f"Demo passphrase: {DEMO_PASSPHRASE}")
    args.vault = path
    return run_app(args, passphrase=DEMO_PASSPHRASE)


def register(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="open a demo vault of invented clients and notes (created on first use)",
        description="Open a demo vault filled with synthetic data, already unlocked. "
        f"Its passphrase is {DEMO_PASSPHRASE!r}.",
    )
    demo.set_defaults(func=run_demo)
