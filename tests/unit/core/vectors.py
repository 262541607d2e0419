"""Reference-generated vectors (asherah-protocol.md section 8.1): written by the Rust core
(``asherah`` 0.5.56) with the static master key ``thisIsAStaticMasterKeyForTesting``."""

MASTER_KEY_HEX = "746869734973415374617469634d61737465724b6579466f7254657374696e67"
SERVICE, PRODUCT, PARTITION = "service", "product", "partition"

SK_ID = "_SK_service_product"
IK_ID = "_IK_partition_service_product"
CREATED = 1795866780

SK_RECORD = (
    '{"Created":1795866780,"Key":"E/Lqmm47p2/Ev8L0wp2Op5wFCI0dQH3LToA90LiJXSGJx4knXTArMWqCs3'
    'VeizD1AMoxhjITbqjqcXE6"}'
)
IK_RECORD = (
    '{"Created":1795866780,"Key":"fXBtxPI6dXUb1XE1ZQHUE4bC/AsxzEQOtt2cmcBm+RosANGqyNcjxDLTUw84'
    'M/MkObMTGZ4Cg8S4YXPC","ParentKeyMeta":{"KeyId":"_SK_service_product","Created":1795866780}}'
)
DRIFT_GUARD_ID = (
    "__asherah_internal_config_drift_guard_v1__:O-mWdsyUj1N1pac51xnTwqLSiZxEi6N8QYefpolyGl0"
)
DRR_PAYLOAD = (
    '{"Key":{"Created":1795866781,"Key":"zXV91DkSdmagFOWt07nOVQPSfn+Ex+Y+DTcjNSTYfeEOtByV2XvE'
    'W/Wxb21UnXS0rqSUXYj0jczgbwUT","ParentKeyMeta":{"KeyId":"_IK_partition_service_product",'
    '"Created":1795866780}},"Data":"wroDVe5X0qQu8JTzddCIlCQgN+Hgx9U4tSSXKOFbjYEbDdQMc3Uh3Rg8/0k'
    'Oep6S"}'
)
PAYLOAD = b"mySuperSecretPayload"
DRR_EMPTY = (
    '{"Key":{"Created":1795866781,"Key":"Cfkln2dAdzaVhrXnqPbuf6cdChnXxitWTSfTNGfHynSFeRtC0hHkJJ'
    'LszmDAfmiimlT7qYaSpBvIqgpI","ParentKeyMeta":{"KeyId":"_IK_partition_service_product",'
    '"Created":1795866780}},"Data":"IMu2bbcqaAlh94+ncka76l14qFIsBG7RrCJ8gg=="}'
)
