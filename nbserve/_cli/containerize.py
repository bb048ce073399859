"""`nbserve containerize BENTO`: build the bento's container image (like `bentoml containerize`).

```
nbserve containerize dist/iris-<version>.bento                 # → image iris:<version>
nbserve containerize dist/iris-<version>.bento -t iris:v1 --base-image debian-python:12
nbserve containerize dist/iris-<version>.bento --print         # context + command, no build
nbserve containerize dist/iris-<version>.bento --kubernetes    # build, then print the manifest
```
The bento is opened as `nbserve serve` opens it (an archive is checked and extracted into the
cache first) and built with its own `env/docker/Dockerfile` from a reproducible build context
(`nbserve._bento.image`). The engine's output is the progress, on stderr; stdout gets only what
a script would pipe on: the tag built, or with `--print` the build command, or with
`--kubernetes` the manifest with that tag as its image.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

__all__ = ["containerize", "register", "run"]


def register(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "containerize",
        help="build a bento's container image",
        description="Build the container image of a bento with its own Dockerfile (Docker, else Podman or Buildah).",
        epilog="examples:\n  nbserve containerize dist/iris-<version>.bento -t iris:v1\n  docker run -p 3000:3000 iris:v1\n  nbserve containerize dist/iris-<version>.bento --print",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bento", metavar="BENTO", help="a .bento archive or its directory")
    parser.add_argument(
        "-t", "--tag", help="the image's name:tag (default: <name>:<version> of the bento)"
    )
    parser.add_argument(
        "--base-image",
        metavar="IMAGE",
        help="the image to build on (default: the Dockerfile's, @service(image=...) or python:X.Y-slim)",
    )
    parser.add_argument(
        "--engine",
        choices=("docker", "podman", "buildah"),
        help="the container engine (default: the first of docker, podman, buildah on PATH)",
    )
    parser.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="write the build context to --output and print the build command; build nothing",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=".",
        metavar="DIR",
        help="where --print writes <name>-<version>.context.tar (default: the current directory)",
    )
    parser.add_argument(
        "--kubernetes",
        action="store_true",
        help="print the bento's Kubernetes manifest with the image's tag (on stdout)",
    )
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from nbserve.exceptions import NbserveError

    try:
        return containerize(args)
    except NbserveError as exc:
        print(f"nbserve containerize: error: {exc}", file=sys.stderr)
        return 1


def containerize(args: argparse.Namespace) -> int:
    from nbserve._bento import image
    from nbserve._bento.loader import open_bento

    bento = open_bento(args.bento)
    tag = args.tag or image.default_tag(bento.info)
    if args.print_only:
        engine_name = args.engine or _engine_or_docker()
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        context = out / f"{image.default_tag(bento.info).replace(':', '-')}.context.tar"
        with context.open("wb") as stream:
            image.write_context(bento.path, stream)
        context_arg = "-" if engine_name == "docker" else "DIR"
        command = shlex.join(image.build_command(engine_name, tag, context_arg, args.base_image))
        if engine_name == "docker":
            command += f" < {shlex.quote(str(context.resolve()))}"
        else:
            command = (
                f"mkdir DIR && tar -xf {shlex.quote(str(context.resolve()))} -C DIR && {command}"
            )
        print(f"nbserve: wrote the build context of {bento.tag} to {context}", file=sys.stderr)
        print(command)
        if args.kubernetes:
            print(_manifest(bento.path, tag), end="")
        return 0

    engine = image.find_engine(args.engine)
    print(f"nbserve: building {tag} from {bento.tag} with {engine.name}", file=sys.stderr)
    result = image.build_image(
        bento.path,
        tag,
        engine=engine,
        base_image=args.base_image,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(f"nbserve: built {tag} ({result.summary})", file=sys.stderr)
    print(f"nbserve: run it with: {engine.name} run --rm -p 3000:3000 {tag}", file=sys.stderr)
    if args.kubernetes:
        print(_manifest(bento.path, tag), end="")
    else:
        print(tag)
    return 0


def _engine_or_docker() -> str:
    from nbserve._bento import image

    try:
        return image.find_engine().name
    except image.EngineNotFound:
        return "docker"  # --print works without an engine; the command is for where one is


def _manifest(bento_dir: Path, tag: str) -> str:
    """deploy/kubernetes.yaml with `tag` as the container's image."""
    import yaml

    text = (bento_dir / "deploy/kubernetes.yaml").read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    documents = list(yaml.safe_load_all(text))
    for document in documents:
        if document.get("kind") == "Deployment":
            for container in document["spec"]["template"]["spec"]["containers"]:
                container["image"] = tag
    return header + yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False)
