"""Two real Syncthing instances on 127.0.0.1 sharing one folder, for tests and bench/.

    with SyncthingPair(tmp_path) as pair:      # started, configured, connected to each other
        pair.folders                           # (A's folder, B's folder): the same shared folder
        pair.wait_connected()                  # already done on entry; callable again

Each instance has its own home (keys, config, database); discovery (global and local),
relays, NAT traversal, usage reporting, crash reports and upgrade checks are off, so nothing
leaves the machine. The shared folder rescans every few seconds and watches the file system
(changes are sent within about a second). Processes are killed on leaving the block.
`syncthing_binary()` is None where Syncthing is not installed (`make tools` installs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

FOLDER_ID = "notewell-mailbox"
START_TIMEOUT = 120.0


def syncthing_binary() -> str | None:
    return shutil.which("syncthing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Instance:
    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.home = root / f"syncthing-{name}"
        self.folder = root / f"mailbox-{name}"
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / ".stfolder").mkdir(exist_ok=True)
        self.listen_port, self.gui_port = _free_port(), _free_port()
        self.api_key = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.log = root / f"syncthing-{name}.log"
        done = subprocess.run(
            [syncthing_binary(), "generate", f"--home={self.home}", "--no-default-folder", "--skip-port-probing"],
            capture_output=True, text=True, timeout=START_TIMEOUT, env=self.env(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"syncthing generate failed: {done.stderr[-500:]}")
        self.config_path = self.home / "config.xml"
        self.device_id = ET.parse(self.config_path).getroot().find("device").get("id")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(STNOUPGRADE="1", STNORESTART="1", STNODEFAULTFOLDER="1", HOME=str(self.home))
        return env

    def configure(self, peer: _Instance) -> None:
        tree = ET.parse(self.config_path)
        root = tree.getroot()
        for old in root.findall("folder"):
            root.remove(old)
        for old in [d for d in root.findall("device") if d.get("id") != self.device_id]:
            root.remove(old)
        folder = ET.Element("folder", {
            "id": FOLDER_ID, "label": "Notewell mailbox", "path": str(self.folder), "type": "sendreceive",
            "rescanIntervalS": "5", "fsWatcherEnabled": "true", "fsWatcherDelayS": "1", "ignorePerms": "false",
            "autoNormalize": "true",
        })
        for device_id in (self.device_id, peer.device_id):
            ET.SubElement(folder, "device", {"id": device_id, "introducedBy": ""})
        ET.SubElement(folder, "minDiskFree", {"unit": "%"}).text = "0"
        root.insert(0, folder)
        other = ET.Element("device", {"id": peer.device_id, "name": peer.name, "compression": "metadata",
                                      "introducer": "false", "skipIntroductionRemovals": "false"})
        ET.SubElement(other, "address").text = f"tcp://127.0.0.1:{peer.listen_port}"
        ET.SubElement(other, "autoAcceptFolders").text = "false"
        root.append(other)
        options = root.find("options")
        for address in options.findall("listenAddress"):
            options.remove(address)
        ET.SubElement(options, "listenAddress").text = f"tcp://127.0.0.1:{self.listen_port}"
        settings = {
            "globalAnnounceEnabled": "false", "localAnnounceEnabled": "false", "relaysEnabled": "false",
            "natEnabled": "false", "urAccepted": "-1", "urSeen": "3", "autoUpgradeIntervalH": "0",
            "startBrowser": "false", "crashReportingEnabled": "false", "announceLANAddresses": "false",
            "setLowPriority": "false",
        }
        for key, value in settings.items():
            element = options.find(key)
            if element is None:
                element = ET.SubElement(options, key)
            element.text = value
        tree.write(self.config_path)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [syncthing_binary(), "serve", f"--home={self.home}", "--no-browser", "--no-restart", "--no-upgrade",
             f"--gui-address=http://127.0.0.1:{self.gui_port}", f"--gui-apikey={self.api_key}",
             f"--logfile={self.log}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env(), start_new_session=True,
        )

    def rest(self, path: str):
        request = urllib.request.Request(f"http://127.0.0.1:{self.gui_port}{path}", headers={"X-API-Key": self.api_key})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def connected_to(self, peer: _Instance) -> bool:
        try:
            connections = self.rest("/rest/system/connections")["connections"]
        except (OSError, ValueError, KeyError):
            return False
        return bool(connections.get(peer.device_id, {}).get("connected"))

    def stop(self) -> None:
        # Syncthing runs a monitor process and the worker it starts: the whole process group
        # goes (the instance was started in a session of its own), or the worker outlives it.
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


class SyncthingPair:
    def __init__(self, root: Path) -> None:
        self.a, self.b = _Instance(root, "a"), _Instance(root, "b")
        self.a.configure(self.b)
        self.b.configure(self.a)

    @property
    def folders(self) -> tuple[Path, Path]:
        return self.a.folder, self.b.folder

    def wait_connected(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not (self.a.connected_to(self.b) and self.b.connected_to(self.a)):
            for instance in (self.a, self.b):
                if instance.proc.poll() is not None:
                    raise RuntimeError(f"syncthing {instance.name} exited ({instance.proc.returncode}); see {instance.log}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the two Syncthing instances did not connect; see {self.a.log} and {self.b.log}")
            time.sleep(0.5)

    def __enter__(self) -> SyncthingPair:
        try:
            self.a.start()
            self.b.start()
            self.wait_connected()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.a.stop()
        self.b.stop()
