"""The math agent: questions read and checked here, solved with SymPy in a sandboxed worker process.

question -> normalise -> parse (a bounded AST check, cost) -> pool -> sandbox -> worker -> solve/steps
-> format; `agent` is the entry point (solve_math, detect_math) and `turn` answers a chat turn.
"""
