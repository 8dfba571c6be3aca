"""Data pipeline: decoding, fastai 0.7 transforms, datasets, device loaders, DataBunch, downloads."""
from .course_datasets import (ArraysDataset, ArraysIndexDataset, ArraysNhotDataset, DataLoader, FilesArrayDataset,
                              FilesIndexArrayDataset, FilesIndexArrayRegressionDataset, FilesNhotArrayDataset, ModelData,
                              split_by_idx)
from .databunch import DataBunch, ImageClassifierData
from .datasets import ArrayDataset, BaseDataset, FilesDataset, collate_uint8
from .external import URLs, DownloadError, download_data, untar_data
from .images import (IMAGE_EXTENSIONS, BadImage, BadImageWarning, ImageError, check_headers, image_files, open_image,
                     verify_images)
from .loaders import DeviceDataLoader, default_num_workers, get_cv_idxs
from .video import ClipSampling, VideoDataset
from .video_databunch import VideoClassifierData, VideoDataBunch
from .video_files import verify_videos, video_files
from .video_io import (VIDEO_EXTENSIONS, BadVideoWarning, VideoError, VideoInfo, VideoWarning, probe_video,
                       read_frames)
from .transforms import (AddPadding, CenterCrop, Cutout, CropType, GoogleNetResize, NoCrop, RandomBlur, RandomCrop,
                         RandomDihedral, RandomFlip, RandomLighting, RandomRotate, RandomRotateZoom, RandomScale,
                         RandomStretch, RandomZoom, Scale, Transform, Transforms, cifar_stats, image_to_tensor,
                         imagenet_stats, inception_stats, kinetics_stats, tfms_from_model, tfms_from_stats,
                         transforms_basic, transforms_side_on, transforms_top_down)

__all__ = [
    # images
    'open_image', 'verify_images', 'check_headers', 'image_files', 'ImageError', 'BadImageWarning', 'BadImage',
    'IMAGE_EXTENSIONS',
    # transforms
    'Transform', 'Transforms', 'CropType', 'Scale', 'RandomScale', 'RandomZoom', 'RandomStretch', 'AddPadding',
    'RandomCrop', 'CenterCrop', 'NoCrop', 'GoogleNetResize', 'RandomRotate', 'RandomLighting', 'RandomFlip',
    'RandomDihedral', 'RandomRotateZoom', 'RandomBlur', 'Cutout', 'transforms_basic', 'transforms_side_on',
    'transforms_top_down',
    'imagenet_stats', 'inception_stats', 'cifar_stats', 'tfms_from_stats', 'tfms_from_model', 'image_to_tensor',
    # datasets and loaders
    'BaseDataset', 'FilesDataset', 'ArrayDataset', 'collate_uint8', 'DeviceDataLoader', 'default_num_workers',
    'get_cv_idxs',
    # DataBunch
    'DataBunch', 'ImageClassifierData',
    # fastai 0.7's hand-built data classes
    'FilesArrayDataset', 'FilesIndexArrayDataset', 'FilesNhotArrayDataset', 'FilesIndexArrayRegressionDataset',
    'ArraysDataset', 'ArraysIndexDataset', 'ArraysNhotDataset', 'DataLoader', 'ModelData', 'split_by_idx',
    # downloads
    'URLs', 'DownloadError', 'download_data', 'untar_data',
    # video
    'VideoDataBunch', 'VideoClassifierData', 'VideoDataset', 'ClipSampling', 'kinetics_stats', 'VIDEO_EXTENSIONS',
    'VideoError', 'VideoWarning', 'BadVideoWarning', 'VideoInfo', 'probe_video', 'read_frames', 'verify_videos',
    'video_files',
]
