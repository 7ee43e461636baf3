"""PDF and DOCX uploads: the kind a file is, its text read in a bounded worker process, page by
page (PDF) or heading by heading (DOCX), and chunks that remember where they came from.

Flow: web/uploads.py checks the name and first bytes (kinds) and saves the raw file; the upload
job (agents/file_jobs.py) has extract run `python -m documents.worker` under time and memory
limits (pdf_text, docx_text do the reading there), then sections chunks the text and labels each
chunk with its pages or headings, which the agents cite as [report.pdf, p. 3].
"""
