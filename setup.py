"""Metadata is in setup.cfg; this file only ships schema/router.schema.json inside the package.

The schema stays at schema/router.schema.json (router.yaml's editor hint and the README point there).
An editable install reads it there; a real install (`pip install /path/to/llmproxy`, as the README's
"Run as a service" does) has no checkout beside it, so the build copies the file into the wheel as
llmproxy/router.schema.json, where llmproxy.config looks first.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class build_py_with_schema(build_py):
    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):  # (editable: the package runs from the checkout and finds schema/)
            self.copy_file(str(Path("schema") / "router.schema.json"), str(Path(self.build_lib) / "llmproxy" / "router.schema.json"))


setup(cmdclass={"build_py": build_py_with_schema})
