"""`nbserve.images.Image`: BentoML's way of declaring a service's image in Python.

```python
image = nbserve.images.Image(python_version="3.11").python_packages("torch", "transformers")
@nbserve.service(image=image)
class Summarizer: ...
```
The bento records it: its Python packages join the pinned requirements, `base_image` is the
Dockerfile's `FROM`, and system packages and commands run in the image before the Python
install.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Image"]


@dataclass
class Image:
    """A container image recipe; every method returns the image, so calls chain."""

    base_image: str | None = None
    python_version: str | None = None
    distro: str = "debian"
    lock_python_packages: bool = True
    packages: list[str] = field(default_factory=list)
    apt_packages: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    post_commands: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def python_packages(self, *packages: str) -> Image:
        self.packages.extend(packages)
        return self

    def requirements_file(self, file_path: str) -> Image:
        lines = Path(file_path).read_text(encoding="utf-8").splitlines()
        self.packages.extend(
            line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
        )
        return self

    def system_packages(self, *packages: str) -> Image:
        self.apt_packages.extend(packages)
        return self

    def run(self, command: str) -> Image:
        """A command run in the image before the Python packages are installed."""
        self.commands.append(command)
        return self

    def run_script(self, script: str) -> Image:
        self.commands.append(f"bash {script}")
        return self

    def environment(self, **env: str) -> Image:
        self.env.update(env)
        return self
