"""roomd: the room server for RTCRoom clients on Tencent Cloud live streaming and IM."""

__version__ = "0.1.0"
