"""The part of BVLC Caffe's ``caffe.proto`` that nindsl reads, built in Python (no protoc).

Field numbers and defaults are Caffe's (src/caffe/proto/caffe.proto); messages and fields
nindsl does not use are left out: the text format skips unknown fields
(``allow_unknown_field``) and the wire format keeps them as unknown bytes.
"""

from __future__ import annotations

from functools import cache

_O, _R = 1, 3  # LABEL_OPTIONAL, LABEL_REPEATED
_TYPES = {"double": 1, "float": 2, "int64": 3, "uint64": 4, "int32": 5, "bool": 8, "string": 9,
          "message": 11, "uint32": 13, "enum": 14}

# message → [(name, number, label, type, type name or default, default)]
_MESSAGES: dict[str, list[tuple]] = {
    "BlobShape": [("dim", 1, _R, "int64")],
    "BlobProto": [("shape", 7, _O, "message", "BlobShape"), ("data", 5, _R, "float"), ("diff", 6, _R, "float"),
                  ("double_data", 8, _R, "double"), ("num", 1, _O, "int32"), ("channels", 2, _O, "int32"),
                  ("height", 3, _O, "int32"), ("width", 4, _O, "int32")],
    "FillerParameter": [("type", 1, _O, "string", None, "constant"), ("value", 2, _O, "float", None, "0"),
                        ("min", 3, _O, "float", None, "0"), ("max", 4, _O, "float", None, "1"),
                        ("mean", 5, _O, "float", None, "0"), ("std", 6, _O, "float", None, "1"),
                        ("sparse", 7, _O, "int32", None, "-1"),
                        ("variance_norm", 8, _O, "enum", "FillerParameter.VarianceNorm", "FAN_IN")],
    "ParamSpec": [("name", 1, _O, "string"), ("lr_mult", 3, _O, "float", None, "1"),
                  ("decay_mult", 4, _O, "float", None, "1")],
    "NetStateRule": [("phase", 1, _O, "enum", "Phase")],
    "ConvolutionParameter": [("num_output", 1, _O, "uint32"), ("bias_term", 2, _O, "bool", None, "true"),
                             ("pad", 3, _R, "uint32"), ("kernel_size", 4, _R, "uint32"),
                             ("stride", 6, _R, "uint32"), ("dilation", 18, _R, "uint32"),
                             ("pad_h", 9, _O, "uint32"), ("pad_w", 10, _O, "uint32"),
                             ("kernel_h", 11, _O, "uint32"), ("kernel_w", 12, _O, "uint32"),
                             ("stride_h", 13, _O, "uint32"), ("stride_w", 14, _O, "uint32"),
                             ("group", 5, _O, "uint32", None, "1"),
                             ("weight_filler", 7, _O, "message", "FillerParameter"),
                             ("bias_filler", 8, _O, "message", "FillerParameter")],
    "PoolingParameter": [("pool", 1, _O, "enum", "PoolingParameter.PoolMethod", "MAX"),
                         ("pad", 4, _O, "uint32", None, "0"), ("pad_h", 9, _O, "uint32"), ("pad_w", 10, _O, "uint32"),
                         ("kernel_size", 2, _O, "uint32"), ("kernel_h", 5, _O, "uint32"),
                         ("kernel_w", 6, _O, "uint32"), ("stride", 3, _O, "uint32", None, "1"),
                         ("stride_h", 7, _O, "uint32"), ("stride_w", 8, _O, "uint32"),
                         ("global_pooling", 12, _O, "bool", None, "false")],
    "DropoutParameter": [("dropout_ratio", 1, _O, "float", None, "0.5")],
    "ReLUParameter": [("negative_slope", 1, _O, "float", None, "0")],
    "SoftmaxParameter": [("axis", 2, _O, "int32", None, "1")],
    "InputParameter": [("shape", 1, _R, "message", "BlobShape")],
    "LayerParameter": [("name", 1, _O, "string"), ("type", 2, _O, "string"), ("bottom", 3, _R, "string"),
                       ("top", 4, _R, "string"), ("param", 6, _R, "message", "ParamSpec"),
                       ("blobs", 7, _R, "message", "BlobProto"), ("include", 8, _R, "message", "NetStateRule"),
                       ("exclude", 9, _R, "message", "NetStateRule"),
                       ("convolution_param", 106, _O, "message", "ConvolutionParameter"),
                       ("dropout_param", 108, _O, "message", "DropoutParameter"),
                       ("input_param", 143, _O, "message", "InputParameter"),
                       ("pooling_param", 121, _O, "message", "PoolingParameter"),
                       ("relu_param", 123, _O, "message", "ReLUParameter"),
                       ("softmax_param", 125, _O, "message", "SoftmaxParameter")],
    "V1LayerParameter": [("bottom", 2, _R, "string"), ("top", 3, _R, "string"), ("name", 4, _O, "string"),
                         ("include", 32, _R, "message", "NetStateRule"),
                         ("exclude", 33, _R, "message", "NetStateRule"),
                         ("type", 5, _O, "enum", "V1LayerParameter.LayerType", "NONE"),
                         ("blobs", 6, _R, "message", "BlobProto"), ("blobs_lr", 7, _R, "float"),
                         ("weight_decay", 8, _R, "float"),
                         ("convolution_param", 10, _O, "message", "ConvolutionParameter"),
                         ("dropout_param", 12, _O, "message", "DropoutParameter"),
                         ("pooling_param", 19, _O, "message", "PoolingParameter"),
                         ("relu_param", 30, _O, "message", "ReLUParameter"),
                         ("softmax_param", 39, _O, "message", "SoftmaxParameter")],
    "NetParameter": [("name", 1, _O, "string"), ("layers", 2, _R, "message", "V1LayerParameter"),
                     ("input", 3, _R, "string"), ("input_dim", 4, _R, "int32"),
                     ("input_shape", 8, _R, "message", "BlobShape"), ("layer", 100, _R, "message", "LayerParameter")],
}

# Caffe's V1LayerParameter.LayerType
V1_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3, "CONTRASTIVE_LOSS": 37,
    "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6, "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7,
    "ELTWISE": 25, "EXP": 38, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11,
    "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19,
    "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33,
    "TANH": 23, "WINDOW_DATA": 24, "THRESHOLD": 31,
}
_ENUMS = {
    "Phase": {"TRAIN": 0, "TEST": 1},
    "FillerParameter.VarianceNorm": {"FAN_IN": 0, "FAN_OUT": 1, "AVERAGE": 2},
    "PoolingParameter.PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2},
    "V1LayerParameter.LayerType": V1_TYPES,
}


@cache
def messages() -> dict[str, type]:
    """Message classes by name (``NetParameter``, ``BlobProto``, ...), in a pool of their own."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name="nindsl_caffe.proto", package="caffe", syntax="proto2")
    nested = {name.split(".")[0] for name in _ENUMS if "." in name}
    for name, values in _ENUMS.items():
        if "." not in name:
            file.enum_type.add(name=name).value.extend(
                descriptor_pb2.EnumValueDescriptorProto(name=k, number=v) for k, v in values.items())
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        if name in nested:
            for enum, values in _ENUMS.items():
                if enum.startswith(name + "."):
                    message.enum_type.add(name=enum.split(".")[1]).value.extend(
                        descriptor_pb2.EnumValueDescriptorProto(name=k, number=v) for k, v in values.items())
        for field_name, number, label_, kind, *rest in fields:
            type_name = rest[0] if rest else None
            default = rest[1] if len(rest) > 1 else None
            field = message.field.add(name=field_name, number=number, label=label_, type=_TYPES[kind])
            if type_name:
                field.type_name = f".caffe.{type_name}"
            if default is not None:
                field.default_value = default
            if label_ == _R and name in ("BlobProto", "BlobShape"):  # [packed = true] in caffe.proto
                field.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}")) for name in _MESSAGES}
