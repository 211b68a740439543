"""The fitted-model core: the Space (the one door between a user's rows and a model), Fitted (encode, decode, impute, the one score) and its ONNX export."""
