-- Config helpers: parsing, how a loaded document (bytes from loading_uri or a bytea column)
-- becomes text. Text from a text column is embedded as it is, whatever the parsing config.

CREATE FUNCTION ai.parsing_auto() RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('implementation', 'auto', 'config_type', 'parsing');
COMMENT ON FUNCTION ai.parsing_auto() IS 'Parse loaded documents by their type (PDF, DOCX, PPTX, HTML, Markdown, text) with parsers that need no downloaded models';

CREATE FUNCTION ai.parsing_none() RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('implementation', 'none', 'config_type', 'parsing');
COMMENT ON FUNCTION ai.parsing_none() IS 'Embed loaded documents as UTF-8 text, unparsed';

CREATE FUNCTION ai.parsing_pymupdf() RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('implementation', 'pymupdf', 'config_type', 'parsing');
COMMENT ON FUNCTION ai.parsing_pymupdf() IS 'Parse loaded documents with PyMuPDF (the pymupdf extra)';

CREATE FUNCTION ai.parsing_docling() RETURNS jsonb LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN jsonb_build_object('implementation', 'docling', 'config_type', 'parsing');
COMMENT ON FUNCTION ai.parsing_docling() IS 'Parse loaded documents with docling and its layout models (the docling extra and its downloaded weights)';
