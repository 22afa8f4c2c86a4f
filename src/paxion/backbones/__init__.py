"""Frozen video-language backbones; each subpackage registers its full-size and tiny variants."""

from paxion.backbones import clipvip, internvideo, openvclip, singularity, synth, synth_hard, timesformer  # noqa: F401
