"""Installs the kospeech library and its command-line tools."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def shipped_files() -> list:
    """The Hydra YAML of ``configs/`` and the shipped base model of ``pretrained/``, installed under
    ``share/kospeech/`` of the install's data folder, where ``kospeech.resources`` finds them."""
    folders = {}
    paths = [
        *(ROOT / "configs").rglob("*.yaml"),
        *(ROOT / "pretrained").glob("ds2_synthetic*"),
        ROOT / "pretrained" / "README.md",
    ]
    for path in sorted(paths):
        target = Path("share", "kospeech", path.parent.relative_to(ROOT))
        folders.setdefault(str(target), []).append(str(path.relative_to(ROOT)))
    return sorted(folders.items())


def read_requirements(name: str) -> list:
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r"))]


setup(
    name="kospeech",
    version="0.1.0",
    description="Personalized Korean speech recognition: DeepSpeech2 CTC with per-user adapters",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["kospeech", "kospeech.*"]),
    package_data={"kospeech.service": ["migrations/*.py", "migrations/*.mako", "migrations/versions/*.py", "static/*"]},
    install_requires=read_requirements("requirements.txt"),
    extras_require={"dev": read_requirements("requirements-dev.txt")},
    data_files=shipped_files(),
    entry_points={
        "console_scripts": [
            "kospeech-train = kospeech.cli.train:main",
            "kospeech-eval = kospeech.cli.eval:main",
            "kospeech-transcribe = kospeech.cli.transcribe:main",
            "kospeech-train-adapters = kospeech.cli.train_adapters:main",
            "kospeech-make-corpus = kospeech.cli.make_corpus:main",
            "kospeech-preprocess-kspon = kospeech.cli.preprocess_kspon:main",
            "kospeech-demo = kospeech.cli.demo:main",
            "kospeech-serve = kospeech.cli.serve:main",
            "kospeech-worker = kospeech.cli.worker:main",
            "kospeech-keys = kospeech.cli.keys:main",
        ]
    },
)
