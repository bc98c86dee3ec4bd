"""A minimal stand-in for the original library's tensor: just what a gradient check touches.

Values are kept as Float64 but rounded to the tensor's dtype on every store, as a
float32 buffer would round them. Copies are deep (the original's are shallow; the
fixed checker makes its own copies either way).
"""


struct ExTensor(Copyable, ImplicitlyCopyable, Movable):
    var _data: List[Float64]
    var _shape: List[Int]
    var _dtype: DType
    var _numel: Int

    fn __init__(out self, shape: List[Int], dtype: DType) raises:
        if dtype != DType.float32 and dtype != DType.float64:
            raise Error("this stand-in holds float32 or float64 only")
        self._shape = shape.copy()
        self._dtype = dtype
        self._numel = 1
        for k in range(len(shape)):
            self._numel *= shape[k]
        self._data = List[Float64](length=self._numel, fill=0.0)

    fn __copyinit__(out self, existing: Self):
        self._data = existing._data.copy()
        self._shape = existing._shape.copy()
        self._dtype = existing._dtype
        self._numel = existing._numel

    fn shape(self) -> List[Int]:
        return self._shape.copy()

    fn numel(self) -> Int:
        return self._numel

    fn _get_float64(self, index: Int) -> Float64:
        return self._data[index]

    fn _set_float64(mut self, index: Int, value: Float64):
        if self._dtype == DType.float32:
            self._data[index] = Float64(Float32(value))
        else:
            self._data[index] = value


fn zeros_like(tensor: ExTensor) raises -> ExTensor:
    return ExTensor(tensor.shape(), tensor._dtype)


fn ones_like(tensor: ExTensor) raises -> ExTensor:
    var result = ExTensor(tensor.shape(), tensor._dtype)
    for i in range(result._numel):
        result._set_float64(i, 1.0)
    return result^


fn from_values(values: List[Float64], dtype: DType) raises -> ExTensor:
    var shape = List[Int]()
    shape.append(len(values))
    var result = ExTensor(shape, dtype)
    for i in range(len(values)):
        result._set_float64(i, values[i])
    return result^
