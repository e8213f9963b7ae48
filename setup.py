"""Installation script for semtts (``pip install -e .[dev]``)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(
    r'__version__ = "([^"]+)"', (here / "semtts" / "__init__.py").read_text()
).group(1)

setup(
    name="semtts",
    version=version,
    description="Multi-speaker VITS with CAM++ speaker conditioning and "
    "Whisper semantic distillation, in the style of SpeechBrain.",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["semtts", "semtts.*"]),
    package_data={"semtts": ["data/corpora/*.txt"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",  # torch.library.custom_op (semtts/lobes/vits/opaque_conv.py)
        "torchaudio>=2.1",
        "speechbrain>=1.0",
        "hyperpyyaml>=1.2",
        "openai-whisper>=20231117",
        "sentencepiece>=0.1.99",
        "soundfile>=0.12",
        "phonemizer>=3.2",
        "pypinyin>=0.49",
        "tensorboard>=2.12",
        "numba>=0.58",
        "numpy>=1.24",
        "tqdm>=4.60",
        "matplotlib>=3.5",
        "zhconv>=1.4",  # Mandarin evaluation: transcripts in traditional characters to simplified
    ],
    extras_require={
        "dev": ["pytest>=7", "pytest-xdist>=3", "onnx>=1.15", "onnxscript>=0.1", "onnxruntime>=1.17"],
        # ONNX export of the synthesis graph and its onnxruntime runner
        "onnx": ["onnx>=1.15", "onnxscript>=0.1", "onnxruntime>=1.17"],
        # Triton ships with the CUDA builds of torch on Linux x86-64; CPU-only
        # installs can add it for the interpreter-mode kernel tests.
        "triton": ["triton>=3.0"],
    },
    entry_points={"console_scripts": ["semtts=semtts.cli:main"]},
)
