// A stand-in for a benchmark service, for the image tests only: answers every path with 200 and a
// small JSON body, listens on -Dserver.port (like a Spring Boot jar), and prints its configuration
// file so a test can see what the image holds. Not the benchmark service.
import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

public class StandIn {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(System.getProperty("server.port", "8080"));
        HttpServer server = HttpServer.create(new InetSocketAddress(port), 0);
        server.createContext("/", exchange -> {
            byte[] body = ("{\"path\": \"" + exchange.getRequestURI().getPath() + "\"}")
                .getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().add("Content-Type", "application/json");
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
        System.out.println("stand-in listening on " + port);
    }
}
