package demo.shop;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The harness's offline sample API: a tiny shop with products and orders, written against the
 * JDK's own HTTP server so that it builds from Debian packages alone. Its spec is
 * specifications/demo-shop-openapi.json. One operation has a planted fault:
 * GET /products/{productId}/quote answers 500 when the quantity is a multiple of 7 (including 0).
 */
public final class ShopServer {

    static final class HttpError extends Exception {
        final int status;

        HttpError(int status, String message) {
            super(message);
            this.status = status;
        }
    }

    private final Map<Long, Map<String, Object>> products = new TreeMap<>();
    private final Map<Long, Map<String, Object>> orders = new TreeMap<>();
    private final AtomicLong productIds = new AtomicLong();
    private final AtomicLong orderIds = new AtomicLong();

    ShopServer() {
        seed("Espresso beans", "coffee", 12.5, 40);
        seed("Green tea", "tea", 6.0, 25);
        seed("Moka pot", "equipment", 31.9, 8);
        seed("Milk frother", "equipment", 19.0, 0);
        seed("Chai blend", "tea", 8.75, 12);
    }

    private void seed(String name, String category, double price, long stock) {
        long id = productIds.incrementAndGet();
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("id", id);
        p.put("name", name);
        p.put("category", category);
        p.put("price", price);
        p.put("stock", stock);
        products.put(id, p);
    }

    public static void main(String[] args) throws IOException {
        int port = Integer.parseInt(System.getenv().getOrDefault("PORT", "8080"));
        ShopServer shop = new ShopServer();
        HttpServer server = HttpServer.create(new InetSocketAddress(port), 128);
        server.createContext("/", shop::handle);
        server.setExecutor(Executors.newFixedThreadPool(8));
        server.start();
        System.out.println("demo-shop listening on " + port);
    }

    void handle(HttpExchange ex) throws IOException {
        int status;
        Object body;
        try {
            Object[] result = route(ex);
            status = (Integer) result[0];
            body = result[1];
        } catch (HttpError e) {
            status = e.status;
            body = error(e.status, e.getMessage());
        } catch (RuntimeException e) {
            // The planted faults end here, as an unhandled error would in a real service.
            status = 500;
            body = error(500, e.getClass().getName() + ": " + e.getMessage());
        }
        byte[] bytes = body == null ? new byte[0] : Json.write(body).getBytes(StandardCharsets.UTF_8);
        if (body != null) {
            ex.getResponseHeaders().set("Content-Type", "application/json");
        }
        ex.sendResponseHeaders(status, bytes.length == 0 ? -1 : bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }

    private static Map<String, Object> error(int status, String message) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("status", status);
        m.put("error", message);
        return m;
    }

    private Object[] route(HttpExchange ex) throws IOException, HttpError {
        String method = ex.getRequestMethod();
        String[] parts = ex.getRequestURI().getRawPath().replaceAll("^/+|/+$", "").split("/");
        Map<String, String> query = query(ex.getRequestURI().getRawQuery());
        if (parts.length == 1 && parts[0].equals("health") && method.equals("GET")) {
            return ok(200, single("status", "up"));
        }
        if (parts.length >= 1 && parts[0].equals("products")) {
            if (parts.length == 1) {
                if (method.equals("GET")) {
                    return ok(200, listProducts(query));
                }
                if (method.equals("POST")) {
                    return ok(201, createProduct(readObject(ex)));
                }
                throw new HttpError(405, "method not allowed");
            }
            long id = idOf(parts[1], "productId");
            if (parts.length == 2) {
                switch (method) {
                    case "GET":
                        return ok(200, product(id));
                    case "PUT":
                        return ok(200, updateProduct(id, readObject(ex)));
                    case "DELETE":
                        synchronized (this) {
                            if (products.remove(id) == null) {
                                throw new HttpError(404, "no product " + id);
                            }
                        }
                        return ok(204, null);
                    default:
                        throw new HttpError(405, "method not allowed");
                }
            }
            if (parts.length == 3 && parts[2].equals("quote") && method.equals("GET")) {
                return ok(200, quote(id, query));
            }
        }
        if (parts.length >= 1 && parts[0].equals("orders")) {
            if (parts.length == 1 && method.equals("GET")) {
                return ok(200, listOrders(query));
            }
            if (parts.length == 1 && method.equals("POST")) {
                return ok(201, createOrder(readObject(ex)));
            }
            if (parts.length == 2 && method.equals("GET")) {
                long id = idOf(parts[1], "orderId");
                synchronized (this) {
                    Map<String, Object> order = orders.get(id);
                    if (order == null) {
                        throw new HttpError(404, "no order " + id);
                    }
                    return ok(200, order);
                }
            }
        }
        throw new HttpError(404, "no route for " + method + " " + ex.getRequestURI().getRawPath());
    }

    private synchronized List<Object> listProducts(Map<String, String> query) throws HttpError {
        String category = query.get("category");
        double maxPrice = query.containsKey("maxPrice") ? number(query.get("maxPrice"), "maxPrice") : Double.MAX_VALUE;
        int limit = query.containsKey("limit") ? (int) number(query.get("limit"), "limit") : 20;
        if (limit < 1 || limit > 100) {
            throw new HttpError(400, "limit must be between 1 and 100");
        }
        List<Object> out = new ArrayList<>();
        for (Map<String, Object> p : products.values()) {
            if (category != null && !category.equals(p.get("category"))) {
                continue;
            }
            if ((Double) p.get("price") > maxPrice) {
                continue;
            }
            if (out.size() >= limit) {
                break;
            }
            out.add(p);
        }
        return out;
    }

    private synchronized Map<String, Object> createProduct(Map<String, Object> in) throws HttpError {
        Map<String, Object> p = validProduct(in);
        long id = productIds.incrementAndGet();
        p.put("id", id);
        Map<String, Object> stored = new LinkedHashMap<>();
        stored.put("id", id);
        stored.putAll(p);
        products.put(id, stored);
        return stored;
    }

    private synchronized Map<String, Object> updateProduct(long id, Map<String, Object> in) throws HttpError {
        Map<String, Object> existing = product(id);
        Map<String, Object> p = validProduct(in);
        existing.putAll(p);
        existing.put("id", id);
        return existing;
    }

    private Map<String, Object> validProduct(Map<String, Object> in) throws HttpError {
        Object name = in.get("name");
        Object price = in.get("price");
        if (!(name instanceof String) || ((String) name).trim().isEmpty()) {
            throw new HttpError(400, "name must be a non-empty string");
        }
        if (!(price instanceof Number) || ((Number) price).doubleValue() < 0) {
            throw new HttpError(400, "price must be a non-negative number");
        }
        Object category = in.containsKey("category") ? in.get("category") : "misc";
        if (!(category instanceof String)) {
            throw new HttpError(400, "category must be a string");
        }
        Object stock = in.containsKey("stock") ? in.get("stock") : Long.valueOf(0);
        if (!(stock instanceof Long) || (Long) stock < 0) {
            throw new HttpError(400, "stock must be a non-negative integer");
        }
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("name", ((String) name).trim());
        p.put("category", category);
        p.put("price", ((Number) price).doubleValue());
        p.put("stock", stock);
        return p;
    }

    private synchronized Map<String, Object> product(long id) throws HttpError {
        Map<String, Object> p = products.get(id);
        if (p == null) {
            throw new HttpError(404, "no product " + id);
        }
        return p;
    }

    private Map<String, Object> quote(long id, Map<String, String> query) throws HttpError {
        Map<String, Object> p = product(id);
        if (!query.containsKey("quantity")) {
            throw new HttpError(400, "quantity is required");
        }
        long quantity = (long) number(query.get("quantity"), "quantity");
        if (quantity < 0) {
            throw new HttpError(400, "quantity must not be negative");
        }
        double unit = (Double) p.get("price");
        // Planted fault: the bulk-discount tier divides by (quantity % 7), so any multiple of 7,
        // zero included, throws ArithmeticException and the request ends in a 500.
        long tier = 100 / (quantity % 7);
        double discount = quantity >= 10 ? Math.min(0.3, 0.05 * (tier % 5)) : 0.0;
        String coupon = query.get("coupon");
        if (coupon != null && coupon.startsWith("SAVE") && coupon.length() > 4) {
            discount += Integer.parseInt(coupon.substring(4)) / 100.0;
        }
        Map<String, Object> q = new LinkedHashMap<>();
        q.put("productId", id);
        q.put("quantity", quantity);
        q.put("unitPrice", unit);
        q.put("discount", discount);
        q.put("total", Math.max(0.0, unit * quantity * (1 - discount)));
        return q;
    }

    private synchronized Map<String, Object> createOrder(Map<String, Object> in) throws HttpError {
        Object productId = in.get("productId");
        Object quantity = in.get("quantity");
        if (!(productId instanceof Long)) {
            throw new HttpError(400, "productId must be an integer");
        }
        if (!(quantity instanceof Long) || (Long) quantity < 1) {
            throw new HttpError(400, "quantity must be a positive integer");
        }
        Map<String, Object> p = products.get(productId);
        if (p == null) {
            throw new HttpError(404, "no product " + productId);
        }
        long stock = (Long) p.get("stock");
        if (stock < (Long) quantity) {
            throw new HttpError(409, "only " + stock + " in stock");
        }
        p.put("stock", stock - (Long) quantity);
        long id = orderIds.incrementAndGet();
        Map<String, Object> order = new LinkedHashMap<>();
        order.put("id", id);
        order.put("productId", productId);
        order.put("quantity", quantity);
        order.put("status", "placed");
        order.put("total", (Double) p.get("price") * (Long) quantity);
        orders.put(id, order);
        return order;
    }

    private synchronized List<Object> listOrders(Map<String, String> query) throws HttpError {
        String status = query.get("status");
        if (status != null && !status.equals("placed") && !status.equals("shipped")) {
            throw new HttpError(400, "status must be placed or shipped");
        }
        List<Object> out = new ArrayList<>();
        for (Map<String, Object> o : orders.values()) {
            if (status == null || status.equals(o.get("status"))) {
                out.add(o);
            }
        }
        return out;
    }

    private static Object[] ok(int status, Object body) {
        return new Object[] {status, body};
    }

    private static Map<String, Object> single(String key, Object value) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put(key, value);
        return m;
    }

    private static long idOf(String raw, String name) throws HttpError {
        try {
            return Long.parseLong(raw);
        } catch (NumberFormatException e) {
            throw new HttpError(400, name + " must be an integer");
        }
    }

    private static double number(String raw, String name) throws HttpError {
        try {
            return Double.parseDouble(raw);
        } catch (NumberFormatException | NullPointerException e) {
            throw new HttpError(400, name + " must be a number");
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> readObject(HttpExchange ex) throws IOException, HttpError {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        try (InputStream in = ex.getRequestBody()) {
            byte[] chunk = new byte[8192];
            int n;
            while ((n = in.read(chunk)) > 0) {
                buf.write(chunk, 0, n);
                if (buf.size() > 1 << 20) {
                    throw new HttpError(413, "body too large");
                }
            }
        }
        Object value;
        try {
            value = Json.parse(new String(buf.toByteArray(), StandardCharsets.UTF_8));
        } catch (Json.ParseException e) {
            throw new HttpError(400, "invalid JSON: " + e.getMessage());
        }
        if (!(value instanceof Map)) {
            throw new HttpError(400, "expected a JSON object");
        }
        return (Map<String, Object>) value;
    }

    private static Map<String, String> query(String raw) {
        Map<String, String> out = new LinkedHashMap<>();
        if (raw == null || raw.isEmpty()) {
            return out;
        }
        for (String pair : raw.split("&")) {
            int eq = pair.indexOf('=');
            String key = eq < 0 ? pair : pair.substring(0, eq);
            String value = eq < 0 ? "" : pair.substring(eq + 1);
            try {
                out.putIfAbsent(URLDecoder.decode(key, "UTF-8"), URLDecoder.decode(value, "UTF-8"));
            } catch (IllegalArgumentException | java.io.UnsupportedEncodingException e) {
                out.putIfAbsent(key, value);
            }
        }
        return out;
    }
}
