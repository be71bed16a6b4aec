"""The model side shared by trainers and exporters: the trained-detector contract, box coding,
running a detector and scoring it with COCO metrics. Modules here may import TensorFlow; the
dataset tier (`odplug.data`) never imports this one.
"""
