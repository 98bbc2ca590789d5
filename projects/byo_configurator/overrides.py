# Run with exec() from train.py: config files named on the command line, then --key=value overrides.
# A value is read with ast.literal_eval (so --compile=False is the boolean False, --lr=3e-4 a float);
# a value literal_eval cannot read stays a string. An unknown key or a value of another type is an error.
import sys
from ast import literal_eval

for _argument in sys.argv[1:]:
    if not _argument.startswith("--"):
        print(f"reading config file {_argument}")
        with open(_argument) as _handle:
            _text = _handle.read()
        print(_text)
        exec(_text)
        continue
    _key, _, _raw = _argument[2:].partition("=")
    if _key not in globals():
        raise ValueError(f"Unknown config key: {_key}")
    try:
        _value = literal_eval(_raw)
    except (SyntaxError, ValueError):
        _value = _raw
    if type(_value) is not type(globals()[_key]):
        raise TypeError(f"--{_key}={_raw}: expected a {type(globals()[_key]).__name__}")
    print(f"override: {_key} = {_value!r}")
    globals()[_key] = _value
