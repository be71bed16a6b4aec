"""Protocol buffer messages odplug reads and writes, without importing TensorFlow.

`tf.train.Example` (tensorflow/core/example/{example,feature}.proto) and the Object Detection
API's `StringIntLabelMap` are declared here as descriptors, field for field the same numbers
and types as upstream, so the bytes protobuf writes are the bytes TensorFlow reads. Building
the descriptors at run time keeps us free of generated `_pb2` modules and their protoc
version pins; TensorFlow itself stays the reader of record in the tests.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F: Any = descriptor_pb2.FieldDescriptorProto


def _field(
    name: str, number: int, kind: int, *, repeated: bool = False, type_name: str = "",
    packed: bool = False, oneof: int | None = None,
) -> descriptor_pb2.FieldDescriptorProto:
    field = _F(name=name, number=number, type=kind)
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name
    if packed:
        field.options.packed = True
    if oneof is not None:
        field.oneof_index = oneof
    return field


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()

    feature = descriptor_pb2.FileDescriptorProto(
        name="odplug/tensorflow_feature.proto", package="tensorflow", syntax="proto3"
    )
    feature.message_type.add(name="BytesList").field.append(
        _field("value", 1, _F.TYPE_BYTES, repeated=True)
    )
    feature.message_type.add(name="FloatList").field.append(
        _field("value", 1, _F.TYPE_FLOAT, repeated=True, packed=True)
    )
    feature.message_type.add(name="Int64List").field.append(
        _field("value", 1, _F.TYPE_INT64, repeated=True, packed=True)
    )
    one = feature.message_type.add(name="Feature")
    one.oneof_decl.add(name="kind")
    one.field.extend([
        _field("bytes_list", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.BytesList", oneof=0),
        _field("float_list", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.FloatList", oneof=0),
        _field("int64_list", 3, _F.TYPE_MESSAGE, type_name=".tensorflow.Int64List", oneof=0),
    ])
    features = feature.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.extend([
        _field("key", 1, _F.TYPE_STRING),
        _field("value", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.Feature"),
    ])
    features.field.append(
        _field("feature", 1, _F.TYPE_MESSAGE, repeated=True,
               type_name=".tensorflow.Features.FeatureEntry")
    )
    feature.message_type.add(name="Example").field.append(
        _field("features", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.Features")
    )
    pool.Add(feature)

    label_map = descriptor_pb2.FileDescriptorProto(
        name="odplug/string_int_label_map.proto", package="object_detection.protos",
        syntax="proto2",
    )
    item = label_map.message_type.add(name="StringIntLabelMapItem")
    item.field.extend([
        _field("name", 1, _F.TYPE_STRING),
        _field("id", 2, _F.TYPE_INT32),
        _field("display_name", 3, _F.TYPE_STRING),
    ])
    label_map.message_type.add(name="StringIntLabelMap").field.append(
        _field("item", 1, _F.TYPE_MESSAGE, repeated=True,
               type_name=".object_detection.protos.StringIntLabelMapItem")
    )
    pool.Add(label_map)
    return pool


_POOL = _build_pool()
Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Example"))
Features = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Features"))
StringIntLabelMap = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("object_detection.protos.StringIntLabelMap")
)
